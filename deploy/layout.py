"""Where each process of the mesh listens, derived from one port base.

Tests and benchmarks pick another base so that they never collide with a mesh
started by ``make up``.
"""

from __future__ import annotations

import os
import pathlib
from dataclasses import dataclass, field

ROOT = pathlib.Path(__file__).resolve().parent.parent
CACHE = ROOT / ".cache"

EMOJI_TOPIC = "emostream.emojis"
SWARM_TOPIC = "emostream.swarms"


def _env_int(name: str, default: int) -> int:
    return int(os.environ.get(name, default))


@dataclass(frozen=True)
class MeshLayout:
    """The shape of one mesh: how many of each role, and its ports.

    Every field can be set from an environment variable named in its comment.
    """

    # EMOSTREAM_RUN_DIR: logs, pid files, Kafka data, checkpoints.
    run_dir: pathlib.Path = field(
        default_factory=lambda: pathlib.Path(
            os.environ.get("EMOSTREAM_RUN_DIR", ROOT / "run")
        )
    )
    # EMOSTREAM_PORT_BASE: Envoy's public listener; the rest are offsets.
    port_base: int = field(
        default_factory=lambda: _env_int("EMOSTREAM_PORT_BASE", 8080)
    )
    # EMOSTREAM_INGEST_PROCESSES
    ingest_processes: int = field(
        default_factory=lambda: _env_int("EMOSTREAM_INGEST_PROCESSES", 1)
    )
    # EMOSTREAM_CLUSTERS
    clusters: int = field(default_factory=lambda: _env_int("EMOSTREAM_CLUSTERS", 2))
    # EMOSTREAM_SUBSCRIBERS_PER_CLUSTER
    subscribers_per_cluster: int = field(
        default_factory=lambda: _env_int("EMOSTREAM_SUBSCRIBERS_PER_CLUSTER", 2)
    )
    # EMOSTREAM_TRIGGER_S: the aggregator's micro-batch interval.
    trigger_s: float = field(
        default_factory=lambda: float(os.environ.get("EMOSTREAM_TRIGGER_S", 2.0))
    )
    # EMOSTREAM_FACTOR: taps per shown emoji.
    factor: int = field(default_factory=lambda: _env_int("EMOSTREAM_FACTOR", 1000))
    # EMOSTREAM_PARTITIONS: partitions of each topic.
    partitions: int = field(default_factory=lambda: _env_int("EMOSTREAM_PARTITIONS", 6))
    # Roles to start beyond Kafka, ingest and Envoy.
    aggregator: bool = True
    fanout: bool = True
    # A no-op EmojiIngest backend beside the real one, for benchmarks.
    noop_ingest: bool = False
    # EMOSTREAM_CORS_ORIGINS: comma-separated origins allowed for gRPC-Web.
    cors_origins: tuple[str, ...] = field(
        default_factory=lambda: tuple(
            o
            for o in os.environ.get(
                "EMOSTREAM_CORS_ORIGINS", "http://127.0.0.1:3000,http://localhost:3000"
            ).split(",")
            if o
        )
    )

    def __post_init__(self) -> None:
        if not 1024 <= self.port_base <= 60_000:
            raise ValueError("port_base must be within 1024..60000")
        for name in ("ingest_processes", "clusters", "subscribers_per_cluster"):
            if not 1 <= getattr(self, name) <= 50:
                raise ValueError(f"{name} must be within 1..50")

    # Ports ---------------------------------------------------------------

    @property
    def envoy_port(self) -> int:
        return self.port_base

    @property
    def envoy_admin_port(self) -> int:
        return self.port_base + 1

    @property
    def spark_ui_port(self) -> int:
        return self.port_base + 2

    @property
    def kafka_port(self) -> int:
        return self.port_base + 10

    @property
    def kafka_controller_port(self) -> int:
        return self.port_base + 11

    @property
    def main_publisher_port(self) -> int:
        return self.port_base + 20

    def cluster_publisher_port(self, cluster: int) -> int:
        return self.port_base + 30 + cluster

    def ingest_port(self, index: int) -> int:
        return self.port_base + 100 + index

    def ingest_metrics_port(self, index: int) -> int:
        return self.port_base + 150 + index

    @property
    def noop_ingest_port(self) -> int:
        return self.port_base + 199

    def subscriber_port(self, cluster: int, index: int) -> int:
        return self.port_base + 200 + cluster * self.subscribers_per_cluster + index

    # Addresses -----------------------------------------------------------

    @property
    def envoy_address(self) -> str:
        return f"127.0.0.1:{self.envoy_port}"

    @property
    def kafka_bootstrap(self) -> str:
        return f"127.0.0.1:{self.kafka_port}"

    @property
    def subscriber_ports(self) -> list[int]:
        return [
            self.subscriber_port(c, i)
            for c in range(self.clusters)
            for i in range(self.subscribers_per_cluster)
        ]

    @property
    def ingest_ports(self) -> list[int]:
        return [self.ingest_port(i) for i in range(self.ingest_processes)]

    @property
    def logs_dir(self) -> pathlib.Path:
        return self.run_dir / "logs"

    @property
    def pids_dir(self) -> pathlib.Path:
        return self.run_dir / "pids"
