"""The per-batch transformation, in Spark: Kafka records in, per-match counts out.

Every row stays in the JVM. ``TapDecoder`` (aggregator/jvm, built by
deploy/bootstrap.sh into the connector jars folder) reads each record value
with the project's descriptor set, and Spark counts the taps per match, emoji
and 100 ms tap bucket; undecodable records are counted per Kafka partition
with their offset range. One task reads all of the batch's Kafka partitions and
counts them, so a batch is one Spark job with no shuffle. Only the counted
groups (a few thousand at most) reach the driver, where ``swarms.fold`` adds
them up.
"""

from __future__ import annotations

from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F

from aggregator.swarms import (
    TAP_BUCKET_MS,
    BatchTally,
    TapGroup,
    UndecodableRun,
    fold,
)
from emostream.v1 import internal_pb2

# Columns of a Kafka source row that the transformation reads.
RECORD_COLUMNS = ["value", "topic", "partition", "offset"]

TAP_FUNCTION = "emostream_tap"
TAP_DECODER_CLASS = "emostream.aggregator.TapDecoder"
# TapDecoder.RETURN_TYPE; the whole struct is null for a value that is not a tap.
TAP_TYPE = "struct<match_id:string,emoji:string,tapped_ms:bigint>"


def register_tap_decoder(spark: SparkSession) -> None:
    """Makes ``emostream_tap(value)`` callable in the session's queries."""
    spark.udf.registerJavaFunction(TAP_FUNCTION, TAP_DECODER_CLASS, TAP_TYPE)


def tap_groups(records: DataFrame) -> DataFrame:
    """Taps per (match_id, emoji, bucket_ms); undecodable records per partition.

    ``bucket_ms`` starts the tap's 100 ms bucket (null for a tap without a
    time). Undecodable records get rows of their own, keyed by ``bad_topic``
    and ``bad_partition`` (null on tap rows), with their lowest and highest
    offset. ``taps`` counts rows either way. (Listing every bad offset took
    a collecting aggregate, which cost 40-70 ms a batch here.)
    """
    # A single partition already meets the grouping's distribution, so Spark
    # plans no exchange: one task, one stage. Measured here, that beats a
    # parallel read followed by a shuffle (aggregator/README.md).
    tap = F.call_function(TAP_FUNCTION, F.col("value"))
    decoded = records.coalesce(1).select(
        tap.alias("tap"), "topic", "partition", "offset"
    )
    tapped_ms = F.col("tap.tapped_ms")
    bad = F.col("tap").isNull()
    bad_offset = F.when(bad, F.col("offset"))
    return decoded.groupBy(
        F.col("tap.match_id").alias("match_id"),
        F.col("tap.emoji").alias("emoji"),
        # pmod: floor, so that a tap before 1970 still starts its bucket.
        (tapped_ms - F.pmod(tapped_ms, F.lit(TAP_BUCKET_MS))).alias("bucket_ms"),
        F.when(bad, F.col("topic")).alias("bad_topic"),
        F.when(bad, F.col("partition")).alias("bad_partition"),
    ).agg(
        F.count(F.lit(1)).alias("taps"),
        F.min(bad_offset).alias("first_offset"),
        F.max(bad_offset).alias("last_offset"),
    )


def summarize(records: DataFrame) -> BatchTally:
    """Reduces one batch of Kafka records to per-match counts on the driver."""
    return fold(
        TapGroup(
            match_id=row.match_id,
            emoji=row.emoji,
            bucket_ms=row.bucket_ms,
            undecodable=None
            if row.bad_topic is None
            else UndecodableRun(
                topic=row.bad_topic,
                partition=row.bad_partition,
                count=row.taps,
                first_offset=row.first_offset,
                last_offset=row.last_offset,
            ),
            taps=row.taps,
        )
        for row in tap_groups(records).collect()
    )


def warm_up(spark: SparkSession, *, rounds: int, rows: int = 5_000) -> None:
    """Runs the transformation ``rounds`` times on made-up taps.

    A fresh JVM interprets, then compiles, the decoder and the counting code;
    measured here, its first 20-30 batches took two to three times as long as
    the later ones. Doing that work before the query starts keeps it out of
    the first minute of a match. The taps are built in Spark SQL from a few
    serialized events, so no Python worker is involved.
    """
    if rounds <= 0:
        return
    templates = [b"\xff"]  # one undecodable record, too
    for i in range(80):
        event = internal_pb2.EmojiEvent(
            match_id=f"warm-up-{i % 4}", user_id=f"u{i}", emoji_type="❤️"
        )
        event.tapped_at.FromMilliseconds(1_000_000_000_000 + 100 * (i // 4))
        templates.append(event.SerializeToString())
    values = F.array(*(F.lit(t) for t in templates))
    index = (F.col("id") % len(templates) + 1).cast("int")
    records = spark.range(rows).select(
        F.element_at(values, index).alias("value"),
        F.lit("warm-up").alias("topic"),
        (F.col("id") % 6).cast("int").alias("partition"),
        F.col("id").alias("offset"),
    )
    for _ in range(rounds):
        summarize(records)
