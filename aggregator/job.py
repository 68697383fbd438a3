"""The aggregator's streaming query: emoji taps in, one swarm per match per batch.

Local (how deploy/mesh.py starts it; the JVM comes up inside this process):

    SPARK_LOCAL_IP=127.0.0.1 PYSPARK_PYTHON=.venv/bin/python \\
    .venv/bin/python -m aggregator --kafka 127.0.0.1:9092 \\
        --checkpoint run/aggregator/checkpoint --ready-file run/aggregator.ready

On a Spark cluster, the same file is the application (see aggregator/README.md
for the exact command, with the connector jars on --jars).
"""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import sys
import threading
import time
from collections.abc import Sequence
from dataclasses import fields
from types import FrameType
from typing import Protocol

from py4j.protocol import Py4JError
from pyspark.errors import StreamingQueryException
from pyspark.sql import DataFrame, SparkSession
from pyspark.sql.streaming import StreamingQuery
from pyspark.sql.streaming.listener import StreamingQueryProgress

from aggregator.batches import RECORD_COLUMNS, register_tap_decoder, summarize
from aggregator.config import LOCAL_MASTER, AggregatorConfig, parse_config
from aggregator.sink import SwarmProducer
from aggregator.swarms import UndecodableRun, Window, swarm_records
from aggregator.warm_up import warm_up
from emostream.runtime import configure_logging

log = logging.getLogger("aggregator")

QUERY_NAME = "emostream-aggregator"
READY_TIMEOUT_S = 120.0
# A batch's reader ends each partition with a fetch at the log's end, which
# the broker holds up to this long when no new tap arrives: Kafka's 500 ms
# default made the last batch of a burst take 6 x 0.5 s (one per partition).
FETCH_MAX_WAIT_MS = 10
# The parallel collector stops the world briefly instead of running beside
# the batch on the same two cores: batches within 0.5 s went from 17-18 to
# 21-22 of 28 at 20,000 taps/s (bench.aggregator_batches, two runs each).
GC = "-XX:+UseParallelGC"
# How often the main thread logs the batches completed meanwhile.
PROGRESS_POLL_S = 1
# Built by deploy/bootstrap.sh from aggregator/jvm into the jars folder.
DECODER_JAR = "emostream-aggregator.jar"
# Session settings for the query's batches, in local mode and under
# spark-submit alike.
SESSION_CONF = {
    # Spark's default checkpoint writer (FileContext) renames each offset and
    # commit file through Hadoop's local file system, which forks `readlink`
    # for every rename: 16 processes a batch, 60-70 ms of each of the offset
    # and commit steps. This writer renames in-process: 15-25 ms each. On a
    # local disk or HDFS its rename is atomic too.
    "spark.sql.streaming.checkpointFileManagerClass": (
        "org.apache.spark.sql.execution.streaming.checkpointing."
        "FileSystemBasedCheckpointFileManager"
    ),
    # Adaptive execution re-plans a query at its shuffles; a batch here has
    # none, so it would only add planning work to every batch.
    "spark.sql.adaptive.enabled": "false",
}


def _launched_by_spark_submit() -> bool:
    # spark-submit starts the JVM first and hands this process its gateway.
    return "PYSPARK_GATEWAY_PORT" in os.environ


def build_session(config: AggregatorConfig) -> SparkSession:
    """A SparkSession bound to 127.0.0.1, quiet, with the Kafka connector."""
    builder = SparkSession.builder.appName(QUERY_NAME)
    tmp_dir = config.work_dir
    tmp_dir.mkdir(parents=True, exist_ok=True)

    if config.master is not None:
        builder = builder.master(config.master)
    if not _launched_by_spark_submit():
        # These only take effect when this process starts the JVM; under
        # spark-submit they belong on its command line.
        jars = sorted(str(p) for p in config.jars_dir.glob("*.jar"))
        if not (config.jars_dir / DECODER_JAR).exists():
            raise SystemExit(
                f"{DECODER_JAR} is not in {config.jars_dir}: run deploy/bootstrap.sh"
            )
        builder = (
            builder.master(config.master or LOCAL_MASTER)
            .config("spark.jars", ",".join(jars))
            .config("spark.driver.memory", config.driver_memory)
            .config("spark.driver.extraJavaOptions", f"-Djava.io.tmpdir={tmp_dir} {GC}")
        )

    for key, value in SESSION_CONF.items():
        builder = builder.config(key, value)
    spark = (
        builder.config("spark.driver.host", "127.0.0.1")
        .config("spark.driver.bindAddress", "127.0.0.1")
        .config("spark.ui.port", str(config.ui_port))
        .config("spark.ui.showConsoleProgress", "false")
        .getOrCreate()
    )
    spark.sparkContext.setLogLevel("WARN")
    try:
        register_tap_decoder(spark)
    except Exception as exc:  # py4j wraps the JVM's ClassNotFoundException
        raise SystemExit(
            f"cannot load the tap decoder ({_first_line(exc)}): "
            f"{DECODER_JAR} and protobuf-java must be on --jars"
        ) from exc
    return spark


class SwarmBatchWriter:
    """The foreachBatch handler: reduce the batch, publish its swarms, log it."""

    def __init__(self, config: AggregatorConfig, producer: SwarmProducer) -> None:
        self._config = config
        self._producer = producer
        self._query_id: str | None = None
        self._query_id_known = threading.Event()
        self._last_batch_id: int | None = None
        self._last_window_end_ms = 0

    def query_started(self, query_id: str) -> None:
        self._query_id = query_id
        self._query_id_known.set()

    def __call__(self, records: DataFrame, batch_id: int) -> None:
        started = time.monotonic()
        window = self._window(batch_id, now_ms=time.time_ns() // 1_000_000)
        # The first batch can begin before start() has returned the query id.
        if not self._query_id_known.wait(timeout=60.0):
            raise RuntimeError("query id unknown 60 s after the first batch began")
        query_id = str(self._query_id)

        batch = summarize(records)
        counted = time.monotonic()
        self._log_undecodable(batch_id, batch.undecodable)
        swarms = swarm_records(
            batch,
            query_id=query_id,
            batch_id=batch_id,
            window=window,
            factor=self._config.factor,
        )
        self._producer.publish(swarms)

        log.info(
            "batch.completed batch=%d rows=%d undecodable=%d matches=%d "
            "swarms=%d count_ms=%d publish_ms=%d duration_ms=%d",
            batch_id,
            batch.input_rows,
            sum(run.count for run in batch.undecodable),
            len(batch.matches),
            len(swarms),
            (counted - started) * 1000,
            (time.monotonic() - counted) * 1000,
            (time.monotonic() - started) * 1000,
        )
        self._last_batch_id = batch_id
        self._last_window_end_ms = window.end_ms

    def _window(self, batch_id: int, *, now_ms: int) -> Window:
        # Processing time: from the previous batch's start to this one's. The
        # first batch after a start has no predecessor here: one trigger back.
        if self._last_batch_id == batch_id - 1:
            return Window(self._last_window_end_ms, now_ms)
        return Window(now_ms - int(self._config.trigger_s * 1000), now_ms)

    def _log_undecodable(self, batch_id: int, runs: Sequence[UndecodableRun]) -> None:
        for run in runs:
            log.warning(
                "record.undecodable batch=%d topic=%s partition=%d count=%d "
                "offsets=%d..%d",
                batch_id,
                run.topic,
                run.partition,
                run.count,
                run.first_offset,
                run.last_offset,
            )


class ProgressReports(Protocol):
    """What BatchProgressLog reads of a StreamingQuery."""

    @property
    def lastProgress(self) -> StreamingQueryProgress | None: ...

    @property
    def recentProgress(self) -> list[StreamingQueryProgress]: ...


class BatchProgressLog:
    """Logs Spark's own timing of every batch, from the query's progress
    reports; WARNING when one outlasts the trigger, since the next batch then
    starts late.

    ``poll`` reads the reports as JSON, two calls into the JVM. A
    StreamingQueryListener gets the same reports, but pyspark turns each one
    into Python objects with dozens of calls, some of which search every jar
    for a class name: profiled, that took about as much CPU as the batch's
    own task.
    """

    def __init__(self, trigger_s: float) -> None:
        self._trigger_ms = trigger_s * 1000
        self._last_batch_id = -1

    def poll(self, query: ProgressReports) -> None:
        """Logs the batches completed since the last call."""
        last = query.lastProgress
        if last is None or last.batchId <= self._last_batch_id:
            return
        if last.batchId == self._last_batch_id + 1:
            new = [last]
        else:  # more than one since the last call, or the first call
            new = [p for p in query.recentProgress if p.batchId > self._last_batch_id]
        for progress in new:
            if _ran_a_batch(progress):
                self._log(progress)
                self._last_batch_id = progress.batchId

    def _log(self, progress: StreamingQueryProgress) -> None:
        durations = progress.durationMs
        trigger_ms = durations.get("triggerExecution", 0)
        slow = trigger_ms > self._trigger_ms
        log.log(
            logging.WARNING if slow else logging.INFO,
            "batch.progress batch=%d rows=%d trigger_ms=%d offsets_ms=%d "
            "batch_ms=%d commit_ms=%d%s",
            progress.batchId,
            progress.numInputRows,
            trigger_ms,
            durations.get("latestOffset", 0) + durations.get("walCommit", 0),
            durations.get("addBatch", 0),
            durations.get("commitOffsets", 0),
            " slower_than_trigger=true" if slow else "",
        )


def _ran_a_batch(progress: StreamingQueryProgress) -> bool:
    # While no taps arrive, Spark reports progress every 10 s anyway, under the
    # id of the batch that has yet to run: no rows and no addBatch. That batch
    # reports again once it has run.
    return "addBatch" in progress.durationMs


def reader_options(config: AggregatorConfig) -> dict[str, str]:
    """Options of Spark's Kafka source shared by the query and the warm-up."""
    return {
        "kafka.bootstrap.servers": config.kafka,
        "kafka.fetch.max.wait.ms": str(FETCH_MAX_WAIT_MS),
    }


def start_query(
    spark: SparkSession, config: AggregatorConfig, writer: SwarmBatchWriter
) -> StreamingQuery:
    """Starts the query; a brand-new checkpoint starts at the latest offsets."""
    records = (
        spark.readStream.format("kafka")
        .options(**reader_options(config))
        .option("subscribe", config.source_topic)
        .option("startingOffsets", "latest")
        .option("failOnDataLoss", "false" if config.skip_lost_offsets else "true")
        .load()
        .select(*RECORD_COLUMNS)
    )
    return (
        records.writeStream.queryName(QUERY_NAME)
        .trigger(processingTime=f"{int(config.trigger_s * 1000)} milliseconds")
        .option("checkpointLocation", str(config.checkpoint))
        .foreachBatch(writer)
        .start()
    )


def wait_until_running(query: StreamingQuery, timeout_s: float) -> None:
    """Returns once the first batch completed, so its offsets are fixed.

    Before that, a brand-new query has not yet looked up the latest offsets,
    and taps sent now could fall before its starting point.
    """
    deadline = time.monotonic() + timeout_s
    while query.lastProgress is None and query.isActive:
        if time.monotonic() > deadline:
            raise TimeoutError(f"no batch completed within {timeout_s} s")
        time.sleep(0.2)


def _log_config(config: AggregatorConfig) -> None:
    fields_text = " ".join(
        f"{f.name}={getattr(config, f.name)}" for f in fields(config)
    )
    log.info(
        "config.effective %s spark_submit=%s", fields_text, _launched_by_spark_submit()
    )


def main(argv: Sequence[str] | None = None) -> int:
    configure_logging("aggregator")
    # py4j narrates every callback at INFO.
    logging.getLogger("py4j").setLevel(logging.WARNING)
    config = parse_config(argv)
    _log_config(config)
    if config.ready_file is not None:
        config.ready_file.unlink(missing_ok=True)

    stopping = threading.Event()

    def on_signal(signum: int, _frame: FrameType | None) -> None:
        log.info("shutdown.requested signal=%s", signal.Signals(signum).name)
        # The JVM goes down with the process group; py4j's complaints about
        # its closed socket are expected from here on. (py4j logs some of
        # them on the root logger, which nothing here logs to.)
        logging.getLogger("py4j").setLevel(logging.CRITICAL)
        logging.getLogger().addFilter(lambda _record: False)
        stopping.set()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)

    spark = build_session(config)
    try:
        warmed = _warm_up(spark, config, stopping)
    except (Py4JError, ConnectionError) as exc:
        # A signal to the whole process group stops the JVM too, often first.
        if not stopping.is_set():
            log.error("warm_up.lost_jvm error=%s", _first_line(exc))
            return 1
        warmed = False
    if not warmed:
        with contextlib.suppress(Exception):
            spark.stop()
        log.info("shutdown.complete during=warm-up")
        return 0

    producer = SwarmProducer(
        config.kafka, config.swarm_topic, timeout_s=config.publish_timeout_s
    )
    writer = SwarmBatchWriter(config, producer)
    progress_log = BatchProgressLog(config.trigger_s)
    query = start_query(spark, config, writer)
    # Kept on this side: once the JVM is gone, asking the query fails.
    query_id = str(query.id)
    writer.query_started(query_id)
    log.info(
        "query.started query_id=%s run_id=%s checkpoint=%s",
        query_id,
        query.runId,
        config.checkpoint,
    )

    try:
        wait_until_running(query, READY_TIMEOUT_S)
        if config.ready_file is not None and query.isActive:
            _write_atomically(config.ready_file, f"{query_id}\n")
        while not stopping.is_set():
            progress_log.poll(query)
            if query.awaitTermination(PROGRESS_POLL_S):
                log.error("query.stopped query_id=%s unexpectedly", query_id)
                return 1
    except StreamingQueryException as exc:
        log.error("query.failed query_id=%s error=%s", query_id, _first_line(exc))
        return 1
    except TimeoutError as exc:
        log.error(
            "query.not_running query_id=%s error=%s (is Kafka at %s reachable?)",
            query_id,
            exc,
            config.kafka,
        )
        return 1
    except (Py4JError, ConnectionError) as exc:
        # A signal to the whole process group stops the JVM too, often first.
        if stopping.is_set():
            log.info("shutdown.jvm_gone query_id=%s", query_id)
            return 0
        log.error("query.lost_jvm query_id=%s error=%s", query_id, _first_line(exc))
        return 1
    finally:
        _shut_down(query, spark, producer)
        if config.ready_file is not None:
            config.ready_file.unlink(missing_ok=True)
    log.info("shutdown.complete query_id=%s", query_id)
    return 0


def _warm_up(
    spark: SparkSession, config: AggregatorConfig, stopping: threading.Event
) -> bool:
    """Runs the warm-up batches; False if a signal came first."""
    started = time.monotonic()
    source = warm_up(
        spark,
        rounds=config.warm_up_rounds,
        kafka=config.kafka,
        source_topic=config.source_topic,
        reader_options=reader_options(config),
        work_dir=config.work_dir,
        stopping=stopping,
    )
    if source == "stopped" or stopping.is_set():
        return False
    log.info(
        "warm_up.completed rounds=%d taps_from=%s duration_ms=%d",
        config.warm_up_rounds,
        source,
        (time.monotonic() - started) * 1000,
    )
    return True


def _shut_down(
    query: StreamingQuery, spark: SparkSession, producer: SwarmProducer
) -> None:
    # On SIGTERM to the process group the JVM may already be going down;
    # whatever did not finish is replayed from the checkpoint next start.
    with contextlib.suppress(Exception):
        query.stop()
    with contextlib.suppress(Exception):
        spark.stop()
    producer.close()


def _write_atomically(path: os.PathLike[str], text: str) -> None:
    tmp = f"{os.fspath(path)}.tmp"
    with open(tmp, "w") as out:
        out.write(text)
    os.replace(tmp, path)


def _first_line(exc: BaseException) -> str:
    return str(exc).strip().splitlines()[0] if str(exc).strip() else repr(exc)


if __name__ == "__main__":
    sys.exit(main())
