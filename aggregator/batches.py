"""The per-batch transformation, in Spark: Kafka records in, per-match counts out.

The batch's Kafka partitions are joined into one Spark partition per core,
and each is decoded and counted in one Python function inside the Spark
workers: taps per (match, emoji), taps per (match, 100 ms tap bucket), the
number of records, and the position of every undecodable one. Only those
small counts leave the workers; the driver adds them up (``swarms.merge``).
One Spark job per batch, no shuffle, and the rows go to Python once without
coming back.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator

from pyspark.sql import DataFrame

from aggregator.decoding import TapDecoder
from aggregator.swarms import (
    TAP_BUCKET_MS,
    BatchTally,
    PartitionCounts,
    RecordPosition,
    merge,
)

# Columns of a Kafka source row that the transformation reads, in this order.
RECORD_COLUMNS = ["value", "topic", "partition", "offset"]

Record = tuple[bytes | bytearray | None, str, int, int]


def count_partition(records: Iterable[Record]) -> Iterator[PartitionCounts]:
    """Decodes and counts one partition's records; yields one PartitionCounts."""
    decoder = TapDecoder()
    counts = PartitionCounts()
    emojis = counts.emojis
    buckets = counts.buckets
    rows = 0
    for value, topic, partition, offset in records:
        rows += 1
        tap = decoder.decode(value)
        if tap is None:
            counts.undecodable.append(RecordPosition(topic, partition, offset))
            continue
        match_id, emoji, tapped_ms = tap
        emoji_key = (match_id, emoji)
        emojis[emoji_key] = emojis.get(emoji_key, 0) + 1
        if tapped_ms is not None:
            bucket_key = (match_id, tapped_ms - tapped_ms % TAP_BUCKET_MS)
            buckets[bucket_key] = buckets.get(bucket_key, 0) + 1
    counts.input_rows = rows
    yield counts


def summarize(records: DataFrame) -> BatchTally:
    """Reduces one batch of Kafka records to per-match counts on the driver."""
    # One task per core rather than per Kafka partition: each task costs a
    # round trip to a Python worker, and the counting needs no more parallelism.
    cores = records.sparkSession.sparkContext.defaultParallelism
    rows = records.select(*RECORD_COLUMNS).coalesce(cores).rdd
    return merge(rows.mapPartitions(count_partition).collect())
