"""The aggregator's pure parts: the reduction rule, decoding, and the fold."""

from __future__ import annotations

import pyarrow as pa
import pytest

from aggregator.decoding import decode_values
from aggregator.swarms import (
    Group,
    GroupKind,
    RecordPosition,
    Window,
    shown_count,
    swarm_records,
    tally,
)
from emostream.v1 import internal_pb2


@pytest.mark.parametrize(
    ("raw", "factor", "shown"),
    [
        (1, 1000, 1),
        (999, 1000, 1),
        (1000, 1000, 1),
        (1999, 1000, 1),
        (2000, 1000, 2),
        (3785, 1000, 3),
        (20, 1000, 1),
        (7, 1, 7),
        (25, 10, 2),
    ],
)
def test_shown_is_one_per_factor_taps_and_never_zero(
    raw: int, factor: int, shown: int
) -> None:
    """shown = max(1, raw // factor) over the boundaries around the factor."""
    assert shown_count(raw, factor) == shown


def _event(match_id: str, emoji: str, tapped_ms: int | None) -> bytes:
    event = internal_pb2.EmojiEvent(match_id=match_id, user_id="u1", emoji_type=emoji)
    if tapped_ms is not None:
        event.tapped_at.FromMilliseconds(tapped_ms)
    return event.SerializeToString()


def test_decoding_marks_bad_values_and_keeps_good_ones() -> None:
    """Garbage, empty and null values come out not ok; events keep their fields."""
    values = pa.array(
        [
            _event("m1", "❤️", 1_700_000_000_123),
            b"\x0a\x02\xff\xfe",  # match_id with bad UTF-8
            b"",  # decodes to an event without match or emoji
            None,
            _event("m2", "🔥", None),
        ],
        pa.binary(),
    )

    decoded = decode_values(values).to_pylist()

    assert [d["ok"] for d in decoded] == [True, False, False, False, True]
    assert decoded[0] == {
        "match_id": "m1",
        "emoji": "❤️",
        "tapped_ms": 1_700_000_000_123,
        "ok": True,
    }
    assert decoded[1]["match_id"] is None
    assert decoded[4]["tapped_ms"] is None


def test_fold_builds_one_sorted_swarm_per_match() -> None:
    """Each match gets its own record; emojis by raw desc, taps by time."""
    groups = [
        Group(GroupKind.EMOJI, 20, match_id="a", emoji="🔥"),
        Group(GroupKind.EMOJI, 3785, match_id="a", emoji="❤️"),
        Group(GroupKind.EMOJI, 20, match_id="a", emoji="😂"),
        Group(GroupKind.EMOJI, 1000, match_id="b", emoji="😭"),
        Group(GroupKind.BUCKET, 5, match_id="a", bucket_ms=1_000_100),
        Group(GroupKind.BUCKET, 3820, match_id="a", bucket_ms=1_000_000),
        Group(GroupKind.BUCKET, 1000, match_id="b", bucket_ms=2_000_000),
        Group(GroupKind.RECORD, 4825),
        Group(GroupKind.RECORD, 1, topic="t", partition=3, offset=17),
        # Undecodable records also form match-less emoji and bucket groups.
        Group(GroupKind.EMOJI, 1),
        Group(GroupKind.BUCKET, 1),
    ]

    batch = tally(groups)
    records = swarm_records(
        batch, query_id="q", batch_id=7, window=Window(1000, 3000), factor=1000
    )

    assert batch.input_rows == 4826
    assert batch.undecodable == [RecordPosition("t", 3, 17)]
    assert [r.match_id for r in records] == ["a", "b"]
    a, b = records
    assert [(e.emoji, e.raw, e.shown) for e in a.emojis] == [
        ("❤️", 3785, 3),
        ("🔥", 20, 1),  # ties by code point: U+1F525 before U+1F602
        ("😂", 20, 1),
    ]
    assert a.total == 3825
    assert [(t.start_unix_ms, t.count) for t in a.taps] == [
        (1_000_000, 3820),
        (1_000_100, 5),
    ]
    assert (a.query_id, a.batch_id) == ("q", 7)
    assert a.window_start.ToMilliseconds() == 1000
    assert a.window_end.ToMilliseconds() == 3000
    assert [(e.emoji, e.raw, e.shown) for e in b.emojis] == [("😭", 1000, 1)]


def test_fold_of_an_empty_batch_produces_no_swarm() -> None:
    """A batch without taps yields nothing, not an empty swarm."""
    batch = tally([])

    records = swarm_records(
        batch, query_id="q", batch_id=0, window=Window(0, 2000), factor=1000
    )

    assert records == []
    assert batch.input_rows == 0
