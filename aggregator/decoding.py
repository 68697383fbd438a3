"""Turns Kafka record values into EmojiEvent fields inside the Python workers.

spark-protobuf is not available here, so the values are parsed with the
generated ``EmojiEvent`` class: one schema, the proto's.
"""

from __future__ import annotations

from typing import NamedTuple

from google.protobuf.message import DecodeError

from emostream.v1 import internal_pb2


class Tap(NamedTuple):
    """What a decodable record value says.

    ``tapped_ms`` is tapped_at (received_at when the tap time is missing), in
    milliseconds since the Unix epoch; None when neither is set.
    """

    match_id: str
    emoji: str
    tapped_ms: int | None


class TapDecoder:
    """Parses record values as EmojiEvents, reusing one message object."""

    def __init__(self) -> None:
        self._event = internal_pb2.EmojiEvent()

    def decode(self, value: bytes | bytearray | None) -> Tap | None:
        """The tap in ``value``; None for a value that is not an EmojiEvent with
        a match and an emoji (garbage, empty, a null tombstone). Never raises
        for a bad value."""
        event = self._event
        try:
            event.ParseFromString(value)  # type: ignore[arg-type]
        except (DecodeError, TypeError):
            # TypeError: a null value (a tombstone).
            return None
        if not event.match_id or not event.emoji_type:
            return None
        if event.HasField("tapped_at"):
            tapped_ms: int | None = event.tapped_at.ToMilliseconds()
        elif event.HasField("received_at"):
            tapped_ms = event.received_at.ToMilliseconds()
        else:
            tapped_ms = None
        return Tap(event.match_id, event.emoji_type, tapped_ms)
