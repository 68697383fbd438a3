"""The per-batch transformation, in Spark: Kafka records in, counted groups out.

One pass over the batch computes three groupings at once (grouping sets):
taps per (match, emoji), taps per (match, 100 ms tap bucket), and one group
per undecodable record (all decodable ones fall into a single group, whose
count completes the number of input rows). The result is small and goes to
the driver, where ``swarms`` folds it.
"""

from __future__ import annotations

import pyarrow as pa
from pyspark.sql import Column, DataFrame, Row
from pyspark.sql import functions as F
from pyspark.sql.pandas.functions import arrow_udf
from pyspark.sql.pandas.types import from_arrow_type

from aggregator.decoding import DECODED_FIELDS, decode_values
from aggregator.swarms import TAP_BUCKET_MS, BatchTally, Group, GroupKind, tally

# Columns of a Kafka source row that the transformation reads.
RECORD_COLUMNS = ["value", "topic", "partition", "offset"]

_decode = arrow_udf(decode_values, from_arrow_type(pa.struct(DECODED_FIELDS)))  # type: ignore[call-overload]


def decoded(records: DataFrame) -> DataFrame:
    """Kafka records -> (match_id, emoji, tapped_ms, ok, topic, partition, offset)."""
    return records.select(
        _decode(F.col("value")).alias("event"), "topic", "partition", "offset"
    ).select(
        "event.match_id",
        "event.emoji",
        "event.tapped_ms",
        "event.ok",
        "topic",
        "partition",
        "offset",
    )


def grouped(events: DataFrame) -> DataFrame:
    """Decoded events -> one row per counted group (see the module docstring)."""
    bad = ~F.col("ok")
    tapped_ms: Column = F.col("tapped_ms")
    columns = events.select(
        "match_id",
        "emoji",
        (tapped_ms - F.pmod(tapped_ms, F.lit(TAP_BUCKET_MS))).alias("bucket_ms"),
        F.when(bad, F.col("topic")).alias("bad_topic"),
        F.when(bad, F.col("partition")).alias("bad_partition"),
        F.when(bad, F.col("offset")).alias("bad_offset"),
    )
    keys = [
        "match_id",
        "emoji",
        "bucket_ms",
        "bad_topic",
        "bad_partition",
        "bad_offset",
    ]
    return columns.groupingSets(
        [
            ["match_id", "emoji"],
            ["match_id", "bucket_ms"],
            ["bad_topic", "bad_partition", "bad_offset"],
        ],
        *keys,
    ).agg(
        F.count(F.lit(1)).alias("count"),
        F.grouping("emoji").alias("emoji_rolled_up"),
        F.grouping("bucket_ms").alias("bucket_rolled_up"),
    )


def summarize(records: DataFrame) -> BatchTally:
    """Reduces one batch of Kafka records to per-match counts on the driver."""
    rows = grouped(decoded(records)).collect()
    return tally(_group(row) for row in rows)


def _group(row: Row) -> Group:
    if row["emoji_rolled_up"] == 0:
        kind = GroupKind.EMOJI
    elif row["bucket_rolled_up"] == 0:
        kind = GroupKind.BUCKET
    else:
        kind = GroupKind.RECORD
    return Group(
        kind=kind,
        count=row["count"],
        match_id=row["match_id"],
        emoji=row["emoji"],
        bucket_ms=row["bucket_ms"],
        topic=row["bad_topic"],
        partition=row["bad_partition"],
        offset=row["bad_offset"],
    )
