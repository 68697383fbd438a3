"""Runs the batch transformation on made-up taps before the query starts.

A fresh JVM interprets, then compiles, the code a batch runs: Kafka's reader,
the decoder, the counting. The made-up taps are read from Kafka, from a topic
of their own (``<source topic>.warm-up``, never the source topic), through
the same reader options and transformation as the query's batches. Warmed up
on the same taps built in memory, the reader stays cold: side by side with
bench.aggregator_batches at 20,000 taps/s, batches 2 to 7 took 0.50-1.02 s
after an in-memory warm-up and 0.35-0.65 s after one read from Kafka.

The warm-up topic is filled once, with one trigger's worth of taps at 20,000
taps/s, batched and compressed (lz4) as the ingest service writes them, and
kept (no retention). Where it cannot be created or filled, the warm-up reads
the same taps from memory and says so in the log."""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any

from confluent_kafka import (
    Consumer,
    KafkaError,
    KafkaException,
    Producer,
    TopicPartition,
)
from confluent_kafka.admin import AdminClient, NewTopic
from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F

from aggregator.batches import RECORD_COLUMNS, summarize
from emostream.v1 import internal_pb2

log = logging.getLogger(__name__)

TOPIC_SUFFIX = ".warm-up"
ROWS = 40_000
KAFKA_TIMEOUT_S = 10.0


def made_up_values() -> list[bytes]:
    """The distinct record values a warm-up batch is made of.

    Taps of four matches in a few 100 ms buckets, and one undecodable value.
    """
    values = [b"\xff"]
    for i in range(80):
        event = internal_pb2.EmojiEvent(
            match_id=f"warm-up-{i % 4}", user_id=f"u{i}", emoji_type="❤️"
        )
        event.tapped_at.FromMilliseconds(1_000_000_000_000 + 100 * (i // 4))
        values.append(event.SerializeToString())
    return values


def warm_up(
    spark: SparkSession,
    *,
    rounds: int,
    kafka: str,
    source_topic: str,
    reader_options: Mapping[str, str],
) -> str:
    """Runs the transformation ``rounds`` times; returns where the taps came from
    ("kafka" or "memory"), or "none" for no rounds."""
    if rounds <= 0:
        return "none"
    topic = source_topic + TOPIC_SUFFIX
    try:
        fill_topic(kafka, topic, partitions=_partitions(kafka, source_topic))
        _run(_from_kafka(spark, topic, reader_options), rounds)
        return "kafka"
    except Exception as exc:  # a warm-up is never a reason not to start
        log.warning("warm_up.kafka_unavailable topic=%s error=%s", topic, exc)
    _run(_in_memory(spark), rounds)
    return "memory"


def _run(records: DataFrame, rounds: int) -> None:
    for _ in range(rounds):
        summarize(records)


def _from_kafka(
    spark: SparkSession, topic: str, reader_options: Mapping[str, str]
) -> DataFrame:
    return (
        spark.read.format("kafka")
        .options(**reader_options)
        .option("subscribe", topic)
        .option("startingOffsets", "earliest")
        .option("endingOffsets", "latest")
        .load()
        .select(*RECORD_COLUMNS)
    )


def fill_topic(kafka: str, topic: str, *, partitions: int) -> None:
    """Creates ``topic`` if missing and tops it up to ``ROWS`` made-up taps."""
    admin = AdminClient(_settings(kafka))
    if topic not in admin.list_topics(timeout=KAFKA_TIMEOUT_S).topics:
        new = NewTopic(
            topic,
            num_partitions=partitions,
            replication_factor=-1,  # the broker's default
            config={"retention.ms": "-1"},
        )
        for future in admin.create_topics([new]).values():
            try:
                future.result(timeout=KAFKA_TIMEOUT_S)
            except KafkaException as exc:
                # Another aggregator may have created it meanwhile.
                if exc.args[0].code() != KafkaError.TOPIC_ALREADY_EXISTS:
                    raise
        log.info("warm_up.topic_created topic=%s partitions=%d", topic, partitions)
    missing = ROWS - stored(kafka, topic)
    if missing <= 0:
        return
    producer = Producer(
        _settings(kafka, **{"compression.type": "lz4", "linger.ms": 50})
    )
    values = made_up_values()
    for k in range(missing):
        producer.produce(topic, values[k % len(values)], f"u{k % 500}".encode())
        if k % 1000 == 999:
            producer.poll(0)
    left = producer.flush(KAFKA_TIMEOUT_S)
    if left:
        raise RuntimeError(f"{left} warm-up taps not acknowledged")
    log.info("warm_up.topic_filled topic=%s taps=%d", topic, missing)


def _settings(kafka: str, **more: Any) -> dict[str, Any]:
    return {"bootstrap.servers": kafka, "logger": log, **more}


def _partitions(kafka: str, topic: str) -> int:
    admin = AdminClient(_settings(kafka))
    metadata = admin.list_topics(topic, timeout=KAFKA_TIMEOUT_S).topics.get(topic)
    if metadata is None or metadata.error is not None or not metadata.partitions:
        return 1
    return len(metadata.partitions)


def stored(kafka: str, topic: str) -> int:
    """How many records ``topic`` holds, over all its partitions."""
    consumer = Consumer(_settings(kafka, **{"group.id": "emostream-warm-up"}))
    try:
        metadata = consumer.list_topics(topic, timeout=KAFKA_TIMEOUT_S).topics[topic]
        total = 0
        for partition in metadata.partitions:
            low, high = consumer.get_watermark_offsets(
                TopicPartition(topic, partition), timeout=KAFKA_TIMEOUT_S
            )
            total += high - low
        return total
    finally:
        consumer.close()


def _in_memory(spark: SparkSession) -> DataFrame:
    """The made-up taps as Kafka source rows, built in Spark SQL (no Python
    worker starts)."""
    values = made_up_values()
    array = F.array(*(F.lit(v) for v in values))
    index = (F.col("id") % len(values) + 1).cast("int")
    return spark.range(ROWS).select(
        F.element_at(array, index).alias("value"),
        F.lit("warm-up").alias("topic"),
        (F.col("id") % 6).cast("int").alias("partition"),
        F.col("id").alias("offset"),
    )
