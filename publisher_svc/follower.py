"""Follows an upstream SwarmRelay and hands each new relay message on.

The follower remembers the log it follows (log_id) and the last relay_seq it
handed on. After a lost connection it reconnects with capped exponential
backoff and resumes from there, dropping anything it already had, so the
receiver sees every message once and in order.

A follower that starts empty asks for everything after relay_seq 1, which
fills its history with what the upstream still keeps. Relay message 1 holds
seq 1 of its match, which no resuming viewer needs (a viewer resuming after
seq N >= 1 already has seq 1), so starting after it loses nothing.
"""

from __future__ import annotations

import asyncio
import logging
import random
from collections.abc import Callable
from dataclasses import dataclass

import grpc

from emostream.runtime import CHANNEL_OPTIONS
from emostream.v1 import internal_pb2, internal_pb2_grpc

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Backoff:
    """Delays between reconnects: doubling from ``initial_s`` up to ``max_s``."""

    initial_s: float = 0.2
    max_s: float = 5.0

    def delay_s(self, attempt: int) -> float:
        base = min(self.initial_s * 2**attempt, self.max_s)
        return base * random.uniform(0.5, 1.0)


class Follower:
    """Streams an upstream relay log into ``on_message``.

    ``on_restart`` is called with the new log_id when the upstream's log
    restarted, before the first message of the new log.
    """

    def __init__(
        self,
        *,
        upstream: str,
        follower_id: str,
        on_message: Callable[[internal_pb2.RelayMessage], None],
        on_restart: Callable[[str], None],
        backoff: Backoff,
        idle_timeout_s: float,
        log_id: str = "",
        relay_seq: int = 0,
    ) -> None:
        self._upstream = upstream
        self._follower_id = follower_id
        self._on_message = on_message
        self._on_restart = on_restart
        self._backoff = backoff
        self._idle_timeout_s = idle_timeout_s
        self.log_id = log_id
        self.relay_seq = relay_seq
        self.connected = False

    async def run(self) -> None:
        """Follows until cancelled."""
        attempt = 0
        async with grpc.aio.insecure_channel(
            self._upstream, options=CHANNEL_OPTIONS
        ) as channel:
            stub = internal_pb2_grpc.SwarmRelayStub(channel)
            while True:
                received = await self._follow_once(stub)
                attempt = 0 if received else attempt + 1
                delay_s = self._backoff.delay_s(attempt)
                log.warning(
                    "upstream.reconnecting upstream=%s relay_seq=%d delay_s=%.2f",
                    self._upstream,
                    self.relay_seq,
                    delay_s,
                )
                await asyncio.sleep(delay_s)

    async def _follow_once(self, stub: internal_pb2_grpc.SwarmRelayStub) -> bool:
        """One Follow call until it ends; True when it delivered anything."""
        resume_after = max(self.relay_seq, 1)
        call = stub.Follow(
            internal_pb2.FollowRequest(
                follower_id=self._follower_id, resume_after_relay_seq=resume_after
            )
        )
        received = False
        try:
            while True:
                message = await asyncio.wait_for(call.read(), self._idle_timeout_s)
                if message is grpc.aio.EOF:
                    log.warning("upstream.ended upstream=%s", self._upstream)
                    return received
                if not received:
                    self.connected = True
                    log.info(
                        "upstream.following upstream=%s resume_after=%d",
                        self._upstream,
                        resume_after,
                    )
                received = True
                self._receive(message)
        except TimeoutError:
            log.warning(
                "upstream.silent upstream=%s idle_timeout_s=%s",
                self._upstream,
                self._idle_timeout_s,
            )
            return received
        except grpc.aio.AioRpcError as exc:
            log.warning(
                "upstream.lost upstream=%s code=%s", self._upstream, exc.code().name
            )
            return received
        finally:
            self.connected = False
            call.cancel()

    def _receive(self, message: internal_pb2.RelayMessage) -> None:
        if message.log_id and message.log_id != self.log_id:
            if self.log_id:
                self._on_restart(message.log_id)
            self.log_id = message.log_id
            self.relay_seq = 0
        if not message.HasField("swarm"):
            return
        if message.relay_seq <= self.relay_seq:
            return
        lost = message.history_gap or message.relay_seq != self.relay_seq + 1
        if lost and self.relay_seq > 0:
            log.warning(
                "upstream.history_gap upstream=%s after=%d next=%d",
                self._upstream,
                self.relay_seq,
                message.relay_seq,
            )
        self.relay_seq = message.relay_seq
        self._on_message(message)
