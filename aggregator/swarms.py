"""The reduction rule and the fold of one batch's groups into SwarmRecords.

Pure Python: Spark computes the groups (see ``batches``), this module decides
what a swarm says.
"""

from __future__ import annotations

import enum
from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass, field

from emostream.v1 import emostream_pb2, internal_pb2

TAP_BUCKET_MS = 100


def shown_count(raw: int, factor: int) -> int:
    """Emojis to show for ``raw`` taps: one per ``factor`` taps, at least one."""
    return max(1, raw // factor)


class GroupKind(enum.Enum):
    """Which grouping of the batch a counted group belongs to."""

    EMOJI = "emoji"  # (match_id, emoji)
    BUCKET = "bucket"  # (match_id, bucket_ms)
    RECORD = "record"  # one undecodable record, or all decodable ones together


@dataclass(frozen=True)
class Group:
    """One counted group of a batch, as the aggregation returns it."""

    kind: GroupKind
    count: int
    match_id: str | None = None
    emoji: str | None = None
    bucket_ms: int | None = None
    topic: str | None = None
    partition: int | None = None
    offset: int | None = None


@dataclass(frozen=True)
class RecordPosition:
    """Where a record sits in Kafka."""

    topic: str
    partition: int
    offset: int


@dataclass
class MatchTally:
    """What one batch holds for one match."""

    emojis: dict[str, int] = field(default_factory=dict)
    buckets: dict[int, int] = field(default_factory=dict)


@dataclass
class BatchTally:
    """One batch reduced: rows read, undecodable records, per-match counts."""

    input_rows: int = 0
    undecodable: list[RecordPosition] = field(default_factory=list)
    matches: dict[str, MatchTally] = field(
        default_factory=lambda: defaultdict(MatchTally)
    )


def tally(groups: Iterable[Group]) -> BatchTally:
    """Folds the aggregation's groups into per-match counts."""
    batch = BatchTally()
    for group in groups:
        if group.kind is GroupKind.RECORD:
            batch.input_rows += group.count
            if group.offset is not None:
                batch.undecodable.append(
                    RecordPosition(str(group.topic), int(group.partition or 0),
                                   group.offset)
                )  # fmt: skip
        elif group.match_id is None:
            # Undecodable records have no match; they are counted above.
            continue
        elif group.kind is GroupKind.EMOJI and group.emoji is not None:
            batch.matches[group.match_id].emojis[group.emoji] = group.count
        elif group.kind is GroupKind.BUCKET and group.bucket_ms is not None:
            batch.matches[group.match_id].buckets[group.bucket_ms] = group.count
    batch.undecodable.sort(key=lambda p: (p.topic, p.partition, p.offset))
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
