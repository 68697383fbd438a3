"""The reduction rule, and the fold of one batch's counts into SwarmRecords.

Pure Python: Spark groups each batch's taps (see ``batches``), this module
adds the groups up and decides what a swarm says.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import NamedTuple

from emostream.v1 import emostream_pb2, internal_pb2

TAP_BUCKET_MS = 100


def shown_count(raw: int, factor: int) -> int:
    """Emojis to show for ``raw`` taps: one per ``factor`` taps, at least one."""
    return max(1, raw // factor)


@dataclass
class MatchTally:
    """What one batch holds for one match."""

    emojis: dict[str, int] = field(default_factory=dict)
    buckets: dict[int, int] = field(default_factory=dict)


@dataclass(frozen=True)
class UndecodableRun:
    """The undecodable records of one batch in one Kafka partition."""

    topic: str
    partition: int
    count: int
    first_offset: int
    last_offset: int


@dataclass
class BatchTally:
    """One batch reduced: rows read, undecodable records, per-match counts."""

    input_rows: int = 0
    # Per partition, ordered by topic and partition.
    undecodable: list[UndecodableRun] = field(default_factory=list)
    matches: dict[str, MatchTally] = field(
        default_factory=lambda: defaultdict(MatchTally)
    )


class TapGroup(NamedTuple):
    """One row of a batch as Spark counted it (see ``batches.tap_groups``):
    either taps of one match, emoji and tap bucket, or the undecodable
    records of one partition (``taps`` then counts those)."""

    match_id: str | None
    emoji: str | None
    # None for taps without a time, and on an undecodable row.
    bucket_ms: int | None
    undecodable: UndecodableRun | None
    taps: int


def fold(groups: Iterable[TapGroup]) -> BatchTally:
    """Adds up a batch's groups into per-match emoji and tap-bucket counts."""
    batch = BatchTally()
    for group in groups:
        batch.input_rows += group.taps
        if group.undecodable is not None:
            batch.undecodable.append(group.undecodable)
            continue
        if group.match_id is None or group.emoji is None:
            continue
        match = batch.matches[group.match_id]
        match.emojis[group.emoji] = match.emojis.get(group.emoji, 0) + group.taps
        if group.bucket_ms is not None:
            buckets = match.buckets
            buckets[group.bucket_ms] = buckets.get(group.bucket_ms, 0) + group.taps
    batch.undecodable.sort(key=lambda u: (u.topic, u.partition))
    return batch


@dataclass(frozen=True)
class Window:
    """The processing window of a batch, milliseconds since the Unix epoch."""

    start_ms: int
    end_ms: int


def swarm_records(
    batch: BatchTally,
    *,
    query_id: str,
    batch_id: int,
    window: Window,
    factor: int,
) -> list[internal_pb2.SwarmRecord]:
    """One SwarmRecord per match with at least one tap, ordered by match id."""
    records = []
    for match_id in sorted(batch.matches):
        match = batch.matches[match_id]
        if not match.emojis:
            continue
        record = internal_pb2.SwarmRecord(
            match_id=match_id,
            query_id=query_id,
            batch_id=batch_id,
            total=sum(match.emojis.values()),
        )
        record.window_start.FromMilliseconds(window.start_ms)
        record.window_end.FromMilliseconds(window.end_ms)
        # Most tapped first; ties in a stable, readable order.
        for emoji, raw in sorted(match.emojis.items(), key=lambda e: (-e[1], e[0])):
            record.emojis.append(
                emostream_pb2.EmojiCount(
                    emoji=emoji, raw=raw, shown=shown_count(raw, factor)
                )
            )
        for start_ms in sorted(match.buckets):
            record.taps.append(
                emostream_pb2.TapBucket(
                    start_unix_ms=start_ms, count=match.buckets[start_ms]
                )
            )
        records.append(record)
    return records
