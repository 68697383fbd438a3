"""The aggregator's pure parts: the reduction rule and the fold into swarms."""

from __future__ import annotations

import pytest

from aggregator.swarms import (
    TapGroup,
    UndecodableRun,
    Window,
    fold,
    shown_count,
    swarm_records,
)


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


def _taps(match_id: str, emoji: str, bucket_ms: int | None, taps: int) -> TapGroup:
    return TapGroup(match_id, emoji, bucket_ms, None, taps)


def _bad(partition: int, offset: int) -> TapGroup:
    run = UndecodableRun("t", partition, 1, offset, offset)
    return TapGroup(None, None, None, run, 1)


def test_fold_builds_one_sorted_swarm_per_match() -> None:
    """Groups add up; each match gets its own record; emojis by raw desc,
    taps by time; bad records are listed by position."""
    groups = [
        _taps("a", "🔥", 1_000_000, 20),
        _taps("a", "❤️", 1_000_000, 2780),
        _taps("a", "❤️", 1_000_100, 5),
        _taps("a", "😂", 1_000_000, 20),
        _bad(3, 17),
        _taps("a", "❤️", 1_000_000, 1000),
        _taps("b", "😭", 2_000_000, 1000),
        _bad(1, 40),
    ]

    batch = fold(groups)
    records = swarm_records(
        batch, query_id="q", batch_id=7, window=Window(1000, 3000), factor=1000
    )

    assert batch.input_rows == 4827
    assert [(u.partition, u.first_offset) for u in batch.undecodable] == [
        (1, 40),
        (3, 17),
    ]
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


def test_taps_without_a_time_count_but_fill_no_bucket() -> None:
    """A tap with neither tap nor receive time counts toward its emoji only."""
    batch = fold([_taps("a", "👏", None, 3), _taps("a", "👏", 1_000_000, 2)])

    assert batch.matches["a"].emojis == {"👏": 5}
    assert batch.matches["a"].buckets == {1_000_000: 2}


def test_fold_of_only_bad_records_produces_no_swarm() -> None:
    """Undecodable records are counted and produce no swarm."""
    batch = fold([_bad(0, 1), _bad(2, 2)])

    records = swarm_records(
        batch, query_id="q", batch_id=0, window=Window(0, 2000), factor=1000
    )

    assert records == []
    assert batch.input_rows == 2
    assert len(batch.undecodable) == 2


def test_fold_of_an_empty_batch_produces_no_swarm() -> None:
    """A batch without taps yields nothing, not an empty swarm."""
    batch = fold([])

    records = swarm_records(
        batch, query_id="q", batch_id=0, window=Window(0, 2000), factor=1000
    )

    assert records == []
    assert batch.input_rows == 0
