"""The ingest service's settings: one frozen object, read from flags and env."""

from __future__ import annotations

import argparse
import os
from dataclasses import asdict, dataclass


@dataclass(frozen=True)
class IngestConfig:
    """Every setting of one ingest process, with its unit and default.

    Each flag's default comes from the environment variable named beside it.
    """

    # --listen / EMOSTREAM_INGEST_LISTEN: host:port of the gRPC server.
    listen: str = "127.0.0.1:8180"
    # --metrics-port / EMOSTREAM_INGEST_METRICS_PORT: Prometheus /metrics on
    # 127.0.0.1; 0 turns it off.
    metrics_port: int = 0
    # --kafka / EMOSTREAM_KAFKA: bootstrap servers.
    kafka_bootstrap: str = "127.0.0.1:8090"
    # --topic / EMOSTREAM_INGEST_TOPIC
    topic: str = "emostream.emojis"
    # --noop: answer OK without validating or producing (a benchmark baseline).
    noop: bool = False
    # EMOSTREAM_INGEST_LINGER_MS: how long the producer gathers a batch.
    linger_ms: int = 500
    # EMOSTREAM_INGEST_COMPRESSION: lz4 or zstd.
    compression: str = "lz4"
    # EMOSTREAM_INGEST_MAX_SKEW_S: a tap's timestamp may be this far from the
    # server clock, ahead or behind.
    max_skew_s: float = 300.0
    # EMOSTREAM_INGEST_MAX_BATCH: most taps in one SendEmojis call.
    max_batch: int = 10_000
    # EMOSTREAM_INGEST_QUEUE_MAX_MESSAGES: records queued in the producer,
    # sent or not yet acknowledged; past it calls get RESOURCE_EXHAUSTED.
    queue_max_messages: int = 200_000
    # EMOSTREAM_INGEST_QUEUE_MAX_KBYTES: the same queue's size bound.
    queue_max_kbytes: int = 262_144
    # EMOSTREAM_INGEST_MESSAGE_TIMEOUT_MS: how long an accepted record is
    # retried before it counts as lost (see producer.py for the trade-off).
    message_timeout_ms: int = 120_000
    # EMOSTREAM_INGEST_PROBE_TIMEOUT_S: one broker probe's wait while Kafka is
    # suspected down; new calls are refused from a failed probe on.
    probe_timeout_s: float = 1.0
    # EMOSTREAM_INGEST_STALL_S: records queued with no delivery progress for
    # this long make the broker suspect even without an error report.
    stall_s: float = 10.0
    # EMOSTREAM_INGEST_GRACE_S: in-flight calls' time to finish on SIGTERM.
    grace_s: float = 3.0
    # EMOSTREAM_INGEST_FLUSH_TIMEOUT_S: bound on the final flush on SIGTERM.
    flush_timeout_s: float = 12.0

    def __post_init__(self) -> None:
        host, sep, port = self.listen.rpartition(":")
        if not sep or not host or not port.isdigit():
            raise ValueError("listen must be host:port")
        if self.compression not in ("lz4", "zstd"):
            raise ValueError("compression must be lz4 or zstd")
        if not 0 <= self.metrics_port <= 65_535:
            raise ValueError("metrics_port must be within 0..65535")
        if self.linger_ms < 0 or self.max_skew_s <= 0:
            raise ValueError("linger_ms and max_skew_s must be positive")
        if not 1 <= self.max_batch <= self.queue_max_messages:
            raise ValueError("max_batch must be within 1..queue_max_messages")
        if self.message_timeout_ms < 10_000:
            raise ValueError("message_timeout_ms must be at least 10000")

    def describe(self) -> str:
        """The settings as key=value fields, for the start-up log line."""
        return " ".join(f"{k}={v}" for k, v in asdict(self).items())


def _env(name: str, default: object) -> str:
    return os.environ.get(f"EMOSTREAM_{name}", str(default))


def from_args(argv: list[str] | None = None) -> IngestConfig:
    """Reads the configuration from ``argv`` and EMOSTREAM_* variables."""
    d = IngestConfig
    parser = argparse.ArgumentParser(
        prog="python -m ingest_svc", description="EmoStream tap ingest."
    )
    parser.add_argument("--listen", default=_env("INGEST_LISTEN", d.listen))
    parser.add_argument(
        "--metrics-port",
        type=int,
        default=int(_env("INGEST_METRICS_PORT", d.metrics_port)),
    )
    parser.add_argument("--kafka", default=_env("KAFKA", d.kafka_bootstrap))
    parser.add_argument("--topic", default=_env("INGEST_TOPIC", d.topic))
    parser.add_argument("--noop", action="store_true")
    args = parser.parse_args(argv)

    return IngestConfig(
        listen=args.listen,
        metrics_port=args.metrics_port,
        kafka_bootstrap=args.kafka,
        topic=args.topic,
        noop=args.noop,
        linger_ms=int(_env("INGEST_LINGER_MS", d.linger_ms)),
        compression=_env("INGEST_COMPRESSION", d.compression),
        max_skew_s=float(_env("INGEST_MAX_SKEW_S", d.max_skew_s)),
        max_batch=int(_env("INGEST_MAX_BATCH", d.max_batch)),
        queue_max_messages=int(_env("INGEST_QUEUE_MAX_MESSAGES", d.queue_max_messages)),
        queue_max_kbytes=int(_env("INGEST_QUEUE_MAX_KBYTES", d.queue_max_kbytes)),
        message_timeout_ms=int(_env("INGEST_MESSAGE_TIMEOUT_MS", d.message_timeout_ms)),
        probe_timeout_s=float(_env("INGEST_PROBE_TIMEOUT_S", d.probe_timeout_s)),
        stall_s=float(_env("INGEST_STALL_S", d.stall_s)),
        grace_s=float(_env("INGEST_GRACE_S", d.grace_s)),
        flush_timeout_s=float(_env("INGEST_FLUSH_TIMEOUT_S", d.flush_timeout_s)),
    )
