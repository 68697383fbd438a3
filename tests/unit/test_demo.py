"""The demo's bookkeeping: what viewers saw, percentiles, per-match counts."""

from __future__ import annotations

from deploy.demo import MatchCounts, ViewerTally, weighted_percentiles
from emostream.client import BatchResult, Rejection, Tap
from emostream.crowd import CrowdShape, match_night
from emostream.replay import ScheduledBatch
from emostream.v1 import emostream_pb2


def swarm(seq: int, first_seq: int | None = None, **raw: int) -> emostream_pb2.Swarm:
    message = emostream_pb2.Swarm(match_id="m", seq=seq, first_seq=first_seq or seq)
    for emoji, count in raw.items():
        message.emojis.add(emoji=emoji, raw=count, shown=1)
    message.taps.add(start_unix_ms=1_000_000, count=sum(raw.values()))
    return message


def test_viewer_tally_finds_missing_and_repeated_seqs() -> None:
    """A merged swarm covers its range; a gap and a repeat are both reported."""
    tally = ViewerTally("v", "m")
    tally.record(swarm(1, fire=2), received_s=1001.0)
    tally.record(swarm(3, first_seq=2, fire=3), received_s=1002.0)
    assert tally.missing(3) == []
    assert tally.total == 5

    tally.record(swarm(3, fire=1), received_s=1003.0)
    assert tally.missing(5) == [3, 4, 5]


def test_weighted_percentiles_count_each_value_by_its_weight() -> None:
    """Latency samples stand for as many taps as their bucket held."""
    samples = [(1.0, 50), (2.0, 45), (9.0, 5)]
    assert weighted_percentiles(samples, (50, 95, 99)) == {50: 1.0, 95: 2.0, 99: 9.0}
    assert weighted_percentiles([], (50,)) == {}


def test_match_counts_take_refusals_and_failures_per_match() -> None:
    """Accepted taps are counted per match from each batch's own result."""
    counts = MatchCounts()
    batch = ScheduledBatch(0.0, (Tap("a", "u1", "🔥"), Tap("b", "u2", "x")))
    counts.on_result(batch, BatchResult(accepted=1, rejected=[Rejection(1, "f", "r")]))
    counts.on_result(batch, None)
    assert counts.accepted == {"a": 1}
    assert counts.failed == 2


def test_match_night_plays_the_recorded_time_faster() -> None:
    """At speed 2 a 10 s recorded match is due within 5 real seconds."""
    shape = CrowdShape(base_rate_per_s=20.0, burst_taps=0)
    _, batches = match_night(["a"], duration_s=5.0, speed=2.0, shape=shape, seed=1)
    due = [b.offset_s for b in batches]
    assert due and max(due) < 5.0
