"""The relay log, its Follow server and the follower that resumes across losses."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import grpc
import pytest

from emostream.v1 import internal_pb2, internal_pb2_grpc
from publisher_svc.follower import Backoff, Follower
from publisher_svc.relay_log import RelayLog
from publisher_svc.relay_service import SwarmRelayServicer


def message(relay_seq: int, log_id: str = "L") -> internal_pb2.RelayMessage:
    relayed = internal_pb2.RelayMessage(relay_seq=relay_seq, log_id=log_id)
    relayed.swarm.match_id = "a"
    relayed.swarm.seq = relay_seq
    return relayed


def filled(count: int, capacity: int = 100) -> RelayLog:
    relay_log = RelayLog(capacity=capacity, log_id="L")
    relay_log.extend(message(n) for n in range(1, count + 1))
    return relay_log


@pytest.fixture
async def relay_server() -> AsyncIterator[tuple[RelayLog, str, grpc.aio.Server]]:
    relay_log = filled(5, capacity=10)
    server = grpc.aio.server()
    internal_pb2_grpc.add_SwarmRelayServicer_to_server(
        SwarmRelayServicer(relay_log, heartbeat_s=0.2), server
    )
    port = server.add_insecure_port("127.0.0.1:0")
    await server.start()
    yield relay_log, f"127.0.0.1:{port}", server
    relay_log.close()
    await server.stop(0)


async def read(
    address: str, resume_after: int, count: int, *, heartbeats: bool = False
) -> list:
    async with grpc.aio.insecure_channel(address) as channel:
        call = internal_pb2_grpc.SwarmRelayStub(channel).Follow(
            internal_pb2.FollowRequest(
                follower_id="t", resume_after_relay_seq=resume_after
            )
        )
        received = []
        async for relayed in call:
            if not heartbeats and not relayed.HasField("swarm"):
                continue
            received.append(relayed)
            if len(received) == count:
                call.cancel()
                break
        return received


def test_after_reads_kept_messages_past_a_relay_seq() -> None:
    """Reading after a relay_seq yields the kept messages beyond it, in order."""
    relay_log = filled(8, capacity=5)

    assert [m.relay_seq for m in relay_log.after(5)] == [6, 7, 8]
    assert [m.relay_seq for m in relay_log.after(0)] == [4, 5, 6, 7, 8]
    assert relay_log.after(8) == []


def test_discontinuous_append_restarts_kept_history() -> None:
    """History never has holes: a jump forgets what came before it."""
    relay_log = filled(3)

    relay_log.append(message(9))

    assert [m.relay_seq for m in relay_log.messages()] == [9]


async def test_follow_replays_missed_messages_then_goes_live(relay_server) -> None:
    """A follower resuming after 3 gets 4, 5, then the next live message."""
    relay_log, address, _ = relay_server
    reader = asyncio.create_task(read(address, 3, 3))
    await asyncio.sleep(0.3)
    relay_log.append(message(6))

    received = await asyncio.wait_for(reader, 5.0)

    assert [(m.relay_seq, m.history_gap) for m in received] == [
        (4, False),
        (5, False),
        (6, False),
    ]


async def test_follow_flags_history_that_does_not_reach_back(relay_server) -> None:
    """The first message says history_gap when the resume point was evicted."""
    relay_log, address, _ = relay_server
    relay_log.extend(message(n) for n in range(6, 16))

    received = await asyncio.wait_for(read(address, 2, 2), 5.0)

    assert [(m.relay_seq, m.history_gap) for m in received] == [(6, True), (7, False)]


async def test_idle_follow_gets_heartbeats_with_newest_relay_seq(relay_server) -> None:
    """With nothing new, the follower gets swarm-less heartbeats."""
    _, address, _ = relay_server

    received = await asyncio.wait_for(read(address, 0, 1, heartbeats=True), 5.0)

    assert not received[0].HasField("swarm")
    assert (received[0].relay_seq, received[0].log_id) == (5, "L")


async def test_follower_resumes_after_a_lost_upstream_without_skip_or_repeat(
    relay_server,
) -> None:
    """The follower reconnects after the upstream drops and hands on each once."""
    relay_log, address, _ = relay_server
    handed: list[int] = []
    follower = Follower(
        upstream=address,
        follower_id="t",
        on_message=lambda m: handed.append(m.relay_seq),
        on_restart=lambda _log_id: None,
        backoff=Backoff(0.05, 0.2),
        idle_timeout_s=2.0,
        log_id="L",
        relay_seq=2,
    )
    follow_task = asyncio.create_task(follower.run())
    await _until(lambda: handed == [3, 4, 5])

    # Cut every stream: the server ends them, the follower reconnects.
    relay_log.close()
    await asyncio.sleep(0.2)
    relay_log.closed = False
    relay_log.extend(message(n) for n in (6, 7))
    await _until(lambda: handed == [3, 4, 5, 6, 7])

    follow_task.cancel()
    await asyncio.gather(follow_task, return_exceptions=True)
    assert handed == [3, 4, 5, 6, 7]


async def test_follower_reports_a_restarted_log(relay_server) -> None:
    """A new log_id upstream is reported once, and its messages follow."""
    _, address, _ = relay_server
    restarts: list[str] = []
    handed: list[int] = []
    follower = Follower(
        upstream=address,
        follower_id="t",
        on_message=lambda m: handed.append(m.relay_seq),
        on_restart=restarts.append,
        backoff=Backoff(0.05, 0.2),
        idle_timeout_s=2.0,
        log_id="OLD",
        relay_seq=900,
    )
    follow_task = asyncio.create_task(follower.run())
    await _until(lambda: handed == [1, 2, 3, 4, 5])

    follow_task.cancel()
    await asyncio.gather(follow_task, return_exceptions=True)
    assert restarts == ["L"]


async def _until(condition, timeout_s: float = 5.0) -> None:
    async def poll() -> None:
        while not condition():
            await asyncio.sleep(0.01)

    await asyncio.wait_for(poll(), timeout_s)
