"""A subscriber node that drains on SIGTERM hands its viewers to the others."""

from __future__ import annotations

import asyncio
import contextlib

import pytest

from deploy.mesh import Mesh
from emostream import Client, Swarm, Tap
from emostream.v1 import emostream_pb2

pytestmark = pytest.mark.integration

VIEWERS = 40
ROUNDS = 6
TAPS_PER_ROUND = 50


async def watch(
    client: Client, match_id: str, viewer_id: str, got: list[Swarm]
) -> None:
    async for swarm in client.subscribe(match_id, viewer_id=viewer_id):
        got.append(swarm)


def test_sdk_viewers_resume_without_gap_when_a_node_drains(
    fanout: Mesh, match_id: str
) -> None:
    """SIGTERM on a subscriber node sends DRAINING; the SDK reconnects through
    Envoy to another node and every viewer still sees every swarm once."""
    node = "subscriber-0-0"

    async def scenario() -> tuple[int, list[list[Swarm]]]:
        received: list[list[Swarm]] = [[] for _ in range(VIEWERS)]
        async with (
            Client(fanout.layout.envoy_address) as sender,
            Client(fanout.layout.envoy_address) as viewers,
        ):
            tasks = [
                asyncio.create_task(watch(viewers, match_id, f"v{i}", received[i]))
                for i in range(VIEWERS)
            ]
            await asyncio.sleep(2)
            accepted = 0
            for round_ in range(ROUNDS):
                result = await sender.send_many(
                    Tap(match_id, f"u{round_}-{i}", "🔥") for i in range(TAPS_PER_ROUND)
                )
                accepted += result.accepted
                if round_ == ROUNDS // 2:
                    await asyncio.to_thread(fanout.stop, node)
                await asyncio.sleep(2.5)

            deadline = asyncio.get_running_loop().time() + 90
            while any(sum(s.total for s in got) < accepted for got in received):
                if asyncio.get_running_loop().time() > deadline:
                    break
                await asyncio.sleep(0.5)
            for task in tasks:
                task.cancel()
            for task in tasks:
                with contextlib.suppress(asyncio.CancelledError):
                    await task
        return accepted, received

    try:
        accepted, received = asyncio.run(scenario())
    finally:
        fanout.start(node)

    assert accepted == ROUNDS * TAPS_PER_ROUND
    for viewer, swarms in enumerate(received):
        seq = 0
        for swarm in swarms:
            assert swarm.notice == emostream_pb2.NOTICE_SWARM, f"v{viewer}: {swarm}"
            assert swarm.first_seq == seq + 1, f"v{viewer}: gap or repeat at {seq}"
            seq = swarm.seq
        assert sum(s.total for s in swarms) == accepted, f"v{viewer} lost taps"
