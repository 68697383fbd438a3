"""Runs the query's batches on made-up taps before the query starts.

A fresh JVM interprets, then compiles, the code a batch runs: Kafka's reader,
the decoder, the counting, and Spark's own work per micro-batch. So before the
real query starts, a warm-up query of the same shape (Spark's Kafka source with
the same options, foreachBatch with the same transformation, nothing
published) reads made-up taps from a topic of their own,
``<source topic>.warm-up``, never the source topic, in ``rounds``
micro-batches of ``ROWS_PER_ROUND`` taps.

Measured with bench.aggregator_batches at 20,000 taps/s, side by side: after
20 runs of the transformation on taps built in memory, batches 2 to 7 took
0.50-1.02 s; after 20 batch reads of the topic, 0.35-0.65 s.

The topic is created with the source topic's partition count and no
retention, and filled once with taps batched and compressed as the
ingest service writes them. Where it cannot be created, filled or read, the
warm-up runs the transformation on the same taps built in memory, and says so
in the log.
"""

from __future__ import annotations

import logging
import pathlib
import shutil
import threading
import time
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
from ingest_svc.config import IngestConfig

log = logging.getLogger(__name__)

TOPIC_SUFFIX = ".warm-up"
# A batch's worth of taps at 10,000 taps/s and a 2 s trigger.
ROWS_PER_ROUND = 20_000
KAFKA_TIMEOUT_S = 10.0
STREAM_TIMEOUT_S = 120
STOP_WAIT_S = 5
# A topic just created answers "not the leader" until its leaders are elected.
_NOT_READY_YET = {
    KafkaError.NOT_LEADER_FOR_PARTITION,
    KafkaError.LEADER_NOT_AVAILABLE,
    KafkaError.UNKNOWN_TOPIC_OR_PART,
}


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
    work_dir: pathlib.Path,
    stopping: threading.Event,
) -> str:
    """Runs ``rounds`` warm-up batches; returns where their taps came from
    ("kafka" or "memory"), "none" for no rounds, or "stopped" once
    ``stopping`` is set (the process is shutting down)."""
    if rounds <= 0:
        return "none"
    topic = source_topic + TOPIC_SUFFIX
    try:
        partitions = _partitions(kafka, source_topic)
        fill_topic(kafka, topic, partitions=partitions, taps=rounds * ROWS_PER_ROUND)
        finished = _stream(
            spark, topic, reader_options, work_dir / "warm-up", rounds, stopping
        )
        return "kafka" if finished else "stopped"
    except Exception as exc:  # a warm-up is never a reason not to start
        if stopping.is_set():
            # A signal to the process group takes the JVM down too; there is
            # nothing left to fall back on.
            return "stopped"
        log.warning("warm_up.kafka_unavailable topic=%s error=%s", topic, exc)
    records = _in_memory(spark)
    for _ in range(rounds):
        if stopping.is_set():
            return "stopped"
        summarize(records)
    return "memory"


def _stream(
    spark: SparkSession,
    topic: str,
    reader_options: Mapping[str, str],
    checkpoint: pathlib.Path,
    rounds: int,
    stopping: threading.Event,
) -> bool:
    """Runs a streaming query over all of ``topic``, counting ``rounds`` batches;
    False if ``stopping`` was set first.

    Batches beyond ``rounds`` (the topic holds more taps after a start with
    more rounds) are skipped without reading them, and so is every batch once
    ``stopping`` is set: the query then runs out by itself within a second.
    Stopping it in the middle of a batch instead made Spark overflow its stack
    while classifying the interruption, a thousand lines of log.
    """
    counted = 0

    def each_batch(records: DataFrame, _batch_id: int) -> None:
        nonlocal counted
        if counted < rounds and not stopping.is_set():
            summarize(records)
            counted += 1

    shutil.rmtree(checkpoint, ignore_errors=True)
    query = (
        spark.readStream.format("kafka")
        .options(**reader_options)
        .option("subscribe", topic)
        .option("startingOffsets", "earliest")
        .option("maxOffsetsPerTrigger", str(ROWS_PER_ROUND))
        .load()
        .select(*RECORD_COLUMNS)
        .writeStream.trigger(availableNow=True)
        .option("checkpointLocation", str(checkpoint))
        .foreachBatch(each_batch)
        .start()
    )
    deadline = time.monotonic() + STREAM_TIMEOUT_S
    try:
        while not query.awaitTermination(1):
            if stopping.is_set():
                # Skipped batches end within a second or two; a query stuck
                # (Kafka away) is not waited for.
                deadline = min(deadline, time.monotonic() + STOP_WAIT_S)
            if time.monotonic() > deadline:
                query.stop()
                if stopping.is_set():
                    return False
                raise RuntimeError(
                    f"warm-up query still running after {STREAM_TIMEOUT_S} s"
                )
        if stopping.is_set():
            return False
        if counted < rounds:
            raise RuntimeError(
                f"warm-up query ended after {counted} of {rounds} batches"
            )
    finally:
        shutil.rmtree(checkpoint, ignore_errors=True)
    return True


def fill_topic(kafka: str, topic: str, *, partitions: int, taps: int) -> None:
    """Creates ``topic`` if missing and tops it up to ``taps`` made-up taps."""
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
    missing = taps - stored(kafka, topic)
    if missing <= 0:
        return
    # As the ingest service's producer batches and compresses.
    ingest = IngestConfig()
    producer = Producer(
        _settings(
            kafka,
            **{"compression.type": ingest.compression, "linger.ms": ingest.linger_ms},
        )
    )
    values = made_up_values()
    for k in range(missing):
        while True:
            try:
                producer.produce(topic, values[k % len(values)], f"u{k % 500}".encode())
                break
            except BufferError:  # the local queue is full: let it drain
                producer.poll(0.05)
    left = producer.flush(KAFKA_TIMEOUT_S * 3)
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
        deadline = time.monotonic() + KAFKA_TIMEOUT_S
        total = 0
        for partition in metadata.partitions:
            while True:
                try:
                    low, high = consumer.get_watermark_offsets(
                        TopicPartition(topic, partition), timeout=KAFKA_TIMEOUT_S
                    )
                    break
                except KafkaException as exc:
                    not_ready = exc.args[0].code() in _NOT_READY_YET
                    if not not_ready or time.monotonic() > deadline:
                        raise
                    time.sleep(0.2)
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
    return spark.range(ROWS_PER_ROUND).select(
        F.element_at(array, index).alias("value"),
        F.lit("warm-up").alias("topic"),
        (F.col("id") % 6).cast("int").alias("partition"),
        F.col("id").alias("offset"),
    )
