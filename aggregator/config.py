"""The aggregator's configuration: one frozen object read from flags and env."""

from __future__ import annotations

import argparse
import os
import pathlib
from collections.abc import Sequence
from dataclasses import dataclass

LOCAL_MASTER = "local[*]"
# The same names as deploy.layout's; repeated because the job also runs from
# spark-submit, where only the installed packages are importable.
EMOJI_TOPIC = "emostream.emojis"
SWARM_TOPIC = "emostream.swarms"
# Where deploy/bootstrap.sh puts the Kafka connector jars.
DEFAULT_JARS_DIR = pathlib.Path(__file__).resolve().parent.parent / ".cache/spark/jars"


@dataclass(frozen=True)
class AggregatorConfig:
    """How the streaming job runs. Each flag's default comes from the env var
    named in its help text."""

    # Kafka bootstrap address (host:port) for both topics.
    kafka: str
    # Topic of EmojiEvent records.
    source_topic: str
    # Topic the SwarmRecords go to, keyed by match_id.
    swarm_topic: str
    # Spark checkpoint folder: Kafka offsets and the query id live here.
    checkpoint: pathlib.Path
    # Processing-time trigger interval, seconds.
    trigger_s: float
    # Taps per shown emoji.
    factor: int
    # Spark UI port.
    ui_port: int
    # Written once the query has fixed its first offsets; None: not written.
    ready_file: pathlib.Path | None
    # Spark master; None keeps the one spark-submit gave, else local[*].
    master: str | None
    # Folder of the Kafka connector jars put on spark.jars in local runs.
    jars_dir: pathlib.Path
    # Driver JVM heap, Spark size syntax (only applies when this process
    # starts the JVM; under spark-submit pass --driver-memory).
    driver_memory: str
    # False: checkpoint offsets gone from Kafka fail the query (default).
    # True: Spark skips to the earliest offset left and logs each lost range.
    skip_lost_offsets: bool
    # How long a batch may wait for its swarms to be acknowledged before the
    # query fails, seconds; 0 (the default) waits as long as Kafka is away.
    publish_timeout_s: float
    # Micro-batches of made-up taps (aggregator/warm_up.py) run before the
    # query starts, so that the JVM has compiled what a batch runs; 0: none.
    warm_up_rounds: int

    def __post_init__(self) -> None:
        if not self.kafka or ":" not in self.kafka:
            raise ValueError("kafka must be host:port")
        if not self.source_topic or not self.swarm_topic:
            raise ValueError("source_topic and swarm_topic must not be empty")
        if self.source_topic == self.swarm_topic:
            raise ValueError("swarm_topic must differ from source_topic")
        if not 0.1 <= self.trigger_s <= 3600:
            raise ValueError("trigger_s must be within 0.1..3600")
        if self.factor < 1:
            raise ValueError("factor must be at least 1")
        if not 1024 <= self.ui_port <= 65_535:
            raise ValueError("ui_port must be within 1024..65535")
        if self.publish_timeout_s < 0:
            raise ValueError("publish_timeout_s must not be negative")
        if not 0 <= self.warm_up_rounds <= 100:
            raise ValueError("warm_up_rounds must be within 0..100")

    @property
    def work_dir(self) -> pathlib.Path:
        """Beside the checkpoint: the JVM's temporary and Spark's local files."""
        return self.checkpoint.parent / "tmp"


def _env(name: str, default: str) -> str:
    return os.environ.get(name, default)


def _env_flag(name: str) -> bool:
    return os.environ.get(name, "").lower() in ("1", "true", "yes")


def parse_config(argv: Sequence[str] | None = None) -> AggregatorConfig:
    """Reads flags, falling back to EMOSTREAM_* environment variables."""
    parser = argparse.ArgumentParser(
        prog="python -m aggregator",
        description="Reduces emoji taps to per-match swarms every trigger.",
    )
    add = parser.add_argument
    add(
        "--kafka",
        default=_env("EMOSTREAM_KAFKA", "127.0.0.1:9092"),
        help="Kafka bootstrap host:port (EMOSTREAM_KAFKA)",
    )
    add(
        "--source-topic",
        default=_env("EMOSTREAM_SOURCE_TOPIC", EMOJI_TOPIC),
        help="EmojiEvent topic (EMOSTREAM_SOURCE_TOPIC)",
    )
    add(
        "--swarm-topic",
        default=_env("EMOSTREAM_SWARM_TOPIC", SWARM_TOPIC),
        help="SwarmRecord topic (EMOSTREAM_SWARM_TOPIC)",
    )
    add(
        "--checkpoint",
        default=os.environ.get("EMOSTREAM_AGGREGATOR_CHECKPOINT"),
        required="EMOSTREAM_AGGREGATOR_CHECKPOINT" not in os.environ,
        help="checkpoint folder (EMOSTREAM_AGGREGATOR_CHECKPOINT)",
    )
    add(
        "--trigger-s",
        type=float,
        default=_env("EMOSTREAM_TRIGGER_S", "2"),
        help="micro-batch interval in seconds (EMOSTREAM_TRIGGER_S, 2)",
    )
    add(
        "--factor",
        type=int,
        default=_env("EMOSTREAM_FACTOR", "1000"),
        help="taps per shown emoji (EMOSTREAM_FACTOR, 1000)",
    )
    add(
        "--ui-port",
        type=int,
        default=_env("EMOSTREAM_AGGREGATOR_UI_PORT", "4040"),
        help="Spark UI port (EMOSTREAM_AGGREGATOR_UI_PORT, 4040)",
    )
    add(
        "--ready-file",
        default=os.environ.get("EMOSTREAM_AGGREGATOR_READY_FILE"),
        help="written once the query runs (EMOSTREAM_AGGREGATOR_READY_FILE)",
    )
    add(
        "--master",
        default=os.environ.get("EMOSTREAM_SPARK_MASTER"),
        help="Spark master (EMOSTREAM_SPARK_MASTER; default: spark-submit's "
        f"master, else {LOCAL_MASTER})",
    )
    add(
        "--jars-dir",
        default=_env("EMOSTREAM_SPARK_JARS", str(DEFAULT_JARS_DIR)),
        help="Kafka connector jars (EMOSTREAM_SPARK_JARS, .cache/spark/jars)",
    )
    add(
        "--driver-memory",
        default=_env("EMOSTREAM_AGGREGATOR_DRIVER_MEMORY", "1g"),
        help="driver heap (EMOSTREAM_AGGREGATOR_DRIVER_MEMORY, 1g)",
    )
    add(
        "--skip-lost-offsets",
        action="store_true",
        default=_env_flag("EMOSTREAM_AGGREGATOR_SKIP_LOST_OFFSETS"),
        help="skip offsets Kafka no longer has instead of failing "
        "(EMOSTREAM_AGGREGATOR_SKIP_LOST_OFFSETS)",
    )
    add(
        "--publish-timeout-s",
        type=float,
        default=_env("EMOSTREAM_AGGREGATOR_PUBLISH_TIMEOUT_S", "0"),
        help="wait for swarm acks before failing, seconds; 0: as long as Kafka "
        "is away (EMOSTREAM_AGGREGATOR_PUBLISH_TIMEOUT_S, 0)",
    )
    add(
        "--warm-up-rounds",
        type=int,
        default=_env("EMOSTREAM_AGGREGATOR_WARM_UP_ROUNDS", "20"),
        help="warm-up batches of made-up taps before the query starts, 0..100 "
        "(EMOSTREAM_AGGREGATOR_WARM_UP_ROUNDS, 20)",
    )
    args = parser.parse_args(argv)

    try:
        return AggregatorConfig(
            kafka=args.kafka,
            source_topic=args.source_topic,
            swarm_topic=args.swarm_topic,
            checkpoint=pathlib.Path(args.checkpoint).resolve(),
            trigger_s=args.trigger_s,
            factor=args.factor,
            ui_port=args.ui_port,
            ready_file=pathlib.Path(args.ready_file) if args.ready_file else None,
            master=args.master,
            jars_dir=pathlib.Path(args.jars_dir),
            driver_memory=args.driver_memory,
            skip_lost_offsets=args.skip_lost_offsets,
            publish_timeout_s=args.publish_timeout_s,
            warm_up_rounds=args.warm_up_rounds,
        )
    except ValueError as exc:
        parser.error(str(exc))
