"""The aggregator's pure parts: the reduction rule, decoding, and the fold."""

from __future__ import annotations

import pytest

from aggregator.batches import count_partition
from aggregator.decoding import Tap, TapDecoder
from aggregator.swarms import (
    PartitionCounts,
    RecordPosition,
    Window,
    merge,
    shown_count,
    swarm_records,
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


def test_decoding_rejects_bad_values_and_keeps_good_ones() -> None:
    """Garbage, empty and null values decode to None; events keep their fields."""
    decoder = TapDecoder()
    values = [
        _event("m1", "❤️", 1_700_000_000_123),
        b"\x0a\x02\xff\xfe",  # match_id with bad UTF-8
        b"",  # decodes to an event without match or emoji
        None,
        bytearray(_event("m2", "🔥", None)),
    ]

    decoded = [decoder.decode(v) for v in values]

    assert decoded == [
        Tap("m1", "❤️", 1_700_000_000_123),
        None,
        None,
        None,
        Tap("m2", "🔥", None),
    ]


def test_decoding_falls_back_to_the_receive_time() -> None:
    """A tap without a tap time is placed at the time ingest received it."""
    event = internal_pb2.EmojiEvent(match_id="m", user_id="u", emoji_type="👏")
    event.received_at.FromMilliseconds(1_700_000_000_456)

    tap = TapDecoder().decode(event.SerializeToString())

    assert tap == Tap("m", "👏", 1_700_000_000_456)


def test_partition_count_groups_taps_and_keeps_bad_positions() -> None:
    """One partition yields its emoji and 100 ms bucket counts and bad records."""
    records = [
        (_event("a", "❤️", 1_000_050), "t", 2, 10),
        (_event("a", "❤️", 1_000_099), "t", 2, 11),
        (b"\xff\xff", "t", 2, 12),
        (_event("a", "🔥", 1_000_100), "t", 2, 13),
        (_event("b", "❤️", None), "t", 2, 14),
        (None, "t", 2, 15),
    ]

    (counts,) = count_partition(records)

    assert counts == PartitionCounts(
        input_rows=6,
        emojis={("a", "❤️"): 2, ("a", "🔥"): 1, ("b", "❤️"): 1},
        buckets={("a", 1_000_000): 2, ("a", 1_000_100): 1},
        undecodable=[RecordPosition("t", 2, 12), RecordPosition("t", 2, 15)],
    )


def test_partition_count_of_no_records_is_empty() -> None:
    """An empty partition still yields its (zero) counts."""
    assert list(count_partition([])) == [PartitionCounts()]


def test_fold_builds_one_sorted_swarm_per_match() -> None:
    """Partitions add up; each match gets its own record; emojis by raw desc,
    taps by time."""
    parts = [
        PartitionCounts(
            input_rows=2825,
            emojis={("a", "🔥"): 20, ("a", "❤️"): 2785, ("a", "😂"): 20},
            buckets={("a", 1_000_000): 2820, ("a", 1_000_100): 5},
        ),
        PartitionCounts(
            input_rows=2001,
            emojis={("a", "❤️"): 1000, ("b", "😭"): 1000},
            buckets={("a", 1_000_000): 1000, ("b", 2_000_000): 1000},
            undecodable=[RecordPosition("t", 3, 17)],
        ),
        PartitionCounts(),
    ]

    batch = merge(parts)
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
    batch = merge([])

    records = swarm_records(
        batch, query_id="q", batch_id=0, window=Window(0, 2000), factor=1000
    )

    assert records == []
    assert batch.input_rows == 0
