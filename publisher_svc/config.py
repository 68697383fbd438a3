"""The publisher's configuration, read from flags and EMOSTREAM_* variables."""

from __future__ import annotations

import argparse
import os
import pathlib
from dataclasses import dataclass


@dataclass(frozen=True)
class PublisherConfig:
    """Every setting of one publisher process; each names its variable."""

    # "main" reads Kafka; "cluster" follows an upstream publisher.
    role: str
    # --listen: host:port of the SwarmRelay server.
    listen: str
    # --name: names this process in logs and to its upstream.
    name: str = "publisher-main"
    # --kafka (main): bootstrap servers.
    kafka: str = ""
    # --swarm-topic (main): the aggregator's output topic.
    swarm_topic: str = "emostream.swarms"
    # --group-id / EMOSTREAM_PUBLISHER_GROUP (main): consumer group.
    group_id: str = "emostream-publisher-main"
    # --state-dir (main): where the durable state is written.
    state_dir: pathlib.Path | None = None
    # --upstream (cluster): host:port of the publisher to follow.
    upstream: str = ""
    # EMOSTREAM_RELAY_HISTORY: relay messages kept for followers that resume.
    relay_history: int = 10_000
    # EMOSTREAM_RELAY_HEARTBEAT_S: heartbeat to an idle follower, seconds.
    relay_heartbeat_s: float = 3.0
    # EMOSTREAM_UPSTREAM_IDLE_TIMEOUT_S: reconnect after this much silence.
    upstream_idle_timeout_s: float = 12.0
    # EMOSTREAM_BACKOFF_INITIAL_S / EMOSTREAM_BACKOFF_MAX_S: reconnect delays.
    backoff_initial_s: float = 0.2
    backoff_max_s: float = 5.0

    def __post_init__(self) -> None:
        if self.role not in ("main", "cluster"):
            raise ValueError("role must be main or cluster")
        if self.role == "main" and (not self.kafka or self.state_dir is None):
            raise ValueError("the main publisher needs --kafka and --state-dir")
        if self.role == "cluster" and not self.upstream:
            raise ValueError("a cluster publisher needs --upstream")
        if self.relay_history < 1:
            raise ValueError("relay_history must be at least 1")
        if not 0 < self.relay_heartbeat_s < self.upstream_idle_timeout_s:
            raise ValueError("relay_heartbeat_s must be below the idle timeout")
        if not 0 < self.backoff_initial_s <= self.backoff_max_s:
            raise ValueError("backoff delays must be positive and ordered")

    @classmethod
    def from_args(cls, argv: list[str] | None = None) -> PublisherConfig:
        parser = argparse.ArgumentParser(prog="python -m publisher_svc")
        parser.add_argument("role", choices=["main", "cluster"])
        parser.add_argument("--listen", required=True)
        parser.add_argument("--name")
        parser.add_argument("--kafka", default="")
        parser.add_argument("--swarm-topic", default="emostream.swarms")
        parser.add_argument(
            "--group-id",
            default=os.environ.get(
                "EMOSTREAM_PUBLISHER_GROUP", "emostream-publisher-main"
            ),
        )
        parser.add_argument("--state-dir", type=pathlib.Path)
        parser.add_argument("--upstream", default="")
        args = parser.parse_args(argv)
        env = os.environ
        return cls(
            role=args.role,
            listen=args.listen,
            name=args.name or f"publisher-{args.role}",
            kafka=args.kafka,
            swarm_topic=args.swarm_topic,
            group_id=args.group_id,
            state_dir=args.state_dir,
            upstream=args.upstream,
            relay_history=int(env.get("EMOSTREAM_RELAY_HISTORY", 10_000)),
            relay_heartbeat_s=float(env.get("EMOSTREAM_RELAY_HEARTBEAT_S", 3.0)),
            upstream_idle_timeout_s=float(
                env.get("EMOSTREAM_UPSTREAM_IDLE_TIMEOUT_S", 12.0)
            ),
            backoff_initial_s=float(env.get("EMOSTREAM_BACKOFF_INITIAL_S", 0.2)),
            backoff_max_s=float(env.get("EMOSTREAM_BACKOFF_MAX_S", 5.0)),
        )
