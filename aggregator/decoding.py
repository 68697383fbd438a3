"""Turns Kafka record values into EmojiEvent columns inside the Python workers.

spark-protobuf is not available here, so the values are parsed with the
generated ``EmojiEvent`` class over Arrow batches: one schema, the proto's.
"""

from __future__ import annotations

import pyarrow as pa
from google.protobuf.message import DecodeError

from emostream.v1 import internal_pb2

# What each record value becomes. ``ok`` is false for a value that is not an
# EmojiEvent with a match and an emoji; its other fields are then null.
# ``tapped_ms`` is tapped_at (received_at when the tap time is missing), in
# milliseconds since the Unix epoch; null when neither is set.
DECODED_FIELDS = [
    pa.field("match_id", pa.string()),
    pa.field("emoji", pa.string()),
    pa.field("tapped_ms", pa.int64()),
    pa.field("ok", pa.bool_()),
]


def decode_values(values: pa.Array) -> pa.Array:
    """Parses each value as an EmojiEvent; never raises for a bad value."""
    match_ids: list[str | None] = []
    emojis: list[str | None] = []
    tapped: list[int | None] = []
    oks: list[bool] = []

    event = internal_pb2.EmojiEvent()
    for value in values.to_pylist():
        try:
            event.ParseFromString(value)
        except (DecodeError, TypeError):
            # TypeError: a null value (a tombstone).
            event.Clear()
        if not event.match_id or not event.emoji_type:
            match_ids.append(None)
            emojis.append(None)
            tapped.append(None)
            oks.append(False)
            continue
        match_ids.append(event.match_id)
        emojis.append(event.emoji_type)
        tapped.append(_tapped_ms(event))
        oks.append(True)

    return pa.StructArray.from_arrays(
        [
            pa.array(match_ids, pa.string()),
            pa.array(emojis, pa.string()),
            pa.array(tapped, pa.int64()),
            pa.array(oks, pa.bool_()),
        ],
        fields=DECODED_FIELDS,
    )


def _tapped_ms(event: internal_pb2.EmojiEvent) -> int | None:
    if event.HasField("tapped_at"):
        return event.tapped_at.ToMilliseconds()
    if event.HasField("received_at"):
        return event.received_at.ToMilliseconds()
    return None
