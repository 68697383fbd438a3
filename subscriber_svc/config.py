"""The subscriber node's configuration, read from flags and EMOSTREAM_* variables."""

from __future__ import annotations

import argparse
import os
from dataclasses import dataclass


@dataclass(frozen=True)
class SubscriberConfig:
    """Every setting of one subscriber node; each names its variable."""

    # --listen: host:port of the SwarmFeed server.
    listen: str
    # --upstream: host:port of the cluster publisher to follow.
    upstream: str
    # --name: names this node in logs and to its upstream.
    name: str = "subscriber"
    # EMOSTREAM_SWARM_HISTORY: swarms kept per match for viewers that resume.
    swarm_history: int = 300
    # EMOSTREAM_VIEWER_QUEUE: messages waiting per viewer before merging.
    viewer_queue: int = 8
    # EMOSTREAM_VIEWER_HEARTBEAT_S: heartbeat to an idle match's viewers.
    viewer_heartbeat_s: float = 15.0
    # EMOSTREAM_ROOM_IDLE_S: a match without viewers or swarms is forgotten.
    room_idle_s: float = 3600.0
    # EMOSTREAM_DRAIN_S: how long viewers get to read NOTICE_DRAINING.
    drain_s: float = 3.0
    # EMOSTREAM_UPSTREAM_IDLE_TIMEOUT_S: reconnect after this much silence.
    upstream_idle_timeout_s: float = 12.0
    # EMOSTREAM_BACKOFF_INITIAL_S / EMOSTREAM_BACKOFF_MAX_S: reconnect delays.
    backoff_initial_s: float = 0.2
    backoff_max_s: float = 5.0

    def __post_init__(self) -> None:
        if self.swarm_history < 1:
            raise ValueError("swarm_history must be at least 1")
        if self.viewer_queue < 2:
            raise ValueError("viewer_queue must be at least 2")
        for name in ("viewer_heartbeat_s", "room_idle_s", "upstream_idle_timeout_s"):
            if getattr(self, name) <= 0:
                raise ValueError(f"{name} must be positive")
        if not 0 < self.backoff_initial_s <= self.backoff_max_s:
            raise ValueError("backoff delays must be positive and ordered")

    @classmethod
    def from_args(cls, argv: list[str] | None = None) -> SubscriberConfig:
        parser = argparse.ArgumentParser(prog="python -m subscriber_svc")
        parser.add_argument("--listen", required=True)
        parser.add_argument("--upstream", required=True)
        parser.add_argument("--name", default="subscriber")
        args = parser.parse_args(argv)
        env = os.environ
        return cls(
            listen=args.listen,
            upstream=args.upstream,
            name=args.name,
            swarm_history=int(env.get("EMOSTREAM_SWARM_HISTORY", 300)),
            viewer_queue=int(env.get("EMOSTREAM_VIEWER_QUEUE", 8)),
            viewer_heartbeat_s=float(env.get("EMOSTREAM_VIEWER_HEARTBEAT_S", 15.0)),
            room_idle_s=float(env.get("EMOSTREAM_ROOM_IDLE_S", 3600.0)),
            drain_s=float(env.get("EMOSTREAM_DRAIN_S", 3.0)),
            upstream_idle_timeout_s=float(
                env.get("EMOSTREAM_UPSTREAM_IDLE_TIMEOUT_S", 12.0)
            ),
            backoff_initial_s=float(env.get("EMOSTREAM_BACKOFF_INITIAL_S", 0.2)),
            backoff_max_s=float(env.get("EMOSTREAM_BACKOFF_MAX_S", 5.0)),
        )
