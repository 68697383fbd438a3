"""The fan-out tree in the real mesh: taps in through Envoy, swarms out to viewers."""

from __future__ import annotations

import asyncio
import contextlib
import itertools
from collections.abc import AsyncIterator, Callable

import grpc
import pytest

from deploy.mesh import Mesh
from emostream.v1 import emostream_pb2, emostream_pb2_grpc

pytestmark = pytest.mark.integration

Swarm = emostream_pb2.Swarm
NOTICE_SWARM = emostream_pb2.NOTICE_SWARM
NOTICE_HEARTBEAT = emostream_pb2.NOTICE_HEARTBEAT
NOTICE_DRAINING = emostream_pb2.NOTICE_DRAINING
SWARM_WAIT_S = 90.0


class Viewer:
    """A viewer's stream that reconnects and resumes after its last seq."""

    def __init__(
        self,
        address: str,
        match_id: str,
        viewer_id: str,
        *,
        resume_after_seq: int = 0,
        reconnect_address: str | None = None,
    ) -> None:
        self.address = address
        self.reconnect_address = reconnect_address or address
        self.match_id = match_id
        self.viewer_id = viewer_id
        self.last_seq = resume_after_seq
        self.messages: list[Swarm] = []
        self.reconnects = 0
        self._task: asyncio.Task[None] | None = None

    def start(self) -> Viewer:
        self._task = asyncio.create_task(self._run())
        return self

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)

    @property
    def swarms(self) -> list[Swarm]:
        return [m for m in self.messages if m.notice == NOTICE_SWARM]

    @property
    def total(self) -> int:
        return sum(s.total for s in self.swarms)

    async def _run(self) -> None:
        address = self.address
        while True:
            async with grpc.aio.insecure_channel(address) as channel:
                stub = emostream_pb2_grpc.SwarmFeedStub(channel)
                request = emostream_pb2.SubscribeRequest(
                    match_id=self.match_id,
                    viewer_id=self.viewer_id,
                    resume_after_seq=self.last_seq,
                )
                with contextlib.suppress(grpc.aio.AioRpcError):
                    async for message in stub.Subscribe(request):
                        if message.notice == NOTICE_HEARTBEAT:
                            continue
                        self.messages.append(message)
                        if message.notice != NOTICE_DRAINING:
                            self.last_seq = max(self.last_seq, message.seq)
            self.reconnects += 1
            address = self.reconnect_address
            await asyncio.sleep(0.2)


def assert_gap_free(viewer: Viewer, *, after_seq: int = 0) -> None:
    """Every message continues the seq range of the one before, from after_seq."""
    seq = after_seq
    for message in viewer.messages:
        if message.notice == NOTICE_DRAINING:
            continue
        assert message.notice == NOTICE_SWARM, f"{viewer.viewer_id} got {message}"
        assert message.match_id == viewer.match_id
        assert message.first_seq == seq + 1, (
            f"{viewer.viewer_id} expected seq {seq + 1}, got "
            f"{message.first_seq}..{message.seq}"
        )
        seq = message.seq


@contextlib.asynccontextmanager
async def ingest(mesh: Mesh) -> AsyncIterator[Callable[[dict[str, int]], object]]:
    """Sends taps through Envoy: ``await send({match_id: taps})``."""
    users = itertools.count()
    async with grpc.aio.insecure_channel(mesh.layout.envoy_address) as channel:
        stub = emostream_pb2_grpc.EmojiIngestStub(channel)

        async def send(taps: dict[str, int]) -> None:
            request = emostream_pb2.SendEmojisRequest()
            for match_id, count in taps.items():
                for _ in range(count):
                    item = request.emojis.add(
                        match_id=match_id, user_id=f"u{next(users)}", emoji_type="🔥"
                    )
                    item.timestamp.GetCurrentTime()
            reply = await stub.SendEmojis(request, timeout=10)
            assert reply.accepted == len(request.emojis), reply.rejected[:3]

        yield send


async def until(condition: Callable[[], bool], *, timeout_s: float, what: str) -> None:
    """Waits for ``condition``; fails the test naming ``what`` after timeout_s."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout_s
    while not condition():
        if loop.time() > deadline:
            pytest.fail(f"timed out after {timeout_s} s waiting for {what}")
        await asyncio.sleep(0.2)


async def registered(viewers: list[Viewer]) -> None:
    """Gives the streams a moment to open before taps are sent."""
    await asyncio.sleep(2.0)
    assert all(v.reconnects == 0 for v in viewers), "a stream failed to open"


async def test_500_viewers_get_every_swarm_of_their_match_in_order(
    fanout: Mesh, match_id: str
) -> None:
    """Viewers spread over the nodes by Envoy get all their match's swarms, in order."""
    matches = [f"{match_id}-{m}" for m in range(5)]
    viewers = [
        Viewer(fanout.layout.envoy_address, matches[i % 5], f"viewer-{i}").start()
        for i in range(500)
    ]
    try:
        await registered(viewers)
        async with ingest(fanout) as send:
            for round_taps in (3, 5, 7):
                await send({m: round_taps for m in matches})
                await asyncio.sleep(2.5)

        await until(
            lambda: all(v.total >= 15 for v in viewers),
            timeout_s=SWARM_WAIT_S,
            what="every viewer to count all 15 taps of its match",
        )
        for viewer in viewers:
            assert_gap_free(viewer)
            assert viewer.total == 15
    finally:
        await asyncio.gather(*(v.stop() for v in viewers))


async def test_resuming_viewer_gets_exactly_the_missed_swarms(
    fanout: Mesh, match_id: str
) -> None:
    """A viewer back with resume_after_seq gets the swarms it missed, no more."""
    envoy = fanout.layout.envoy_address
    witness = Viewer(envoy, match_id, "witness").start()
    leaver = Viewer(envoy, match_id, "leaver").start()
    try:
        await registered([witness, leaver])
        async with ingest(fanout) as send:
            await send({match_id: 4})
            await until(
                lambda: leaver.total == 4, timeout_s=SWARM_WAIT_S, what="4 taps"
            )
            await leaver.stop()
            left_at = leaver.last_seq

            for taps in (5, 6):
                await asyncio.sleep(2.5)
                await send({match_id: taps})
        await until(
            lambda: witness.total == 15, timeout_s=SWARM_WAIT_S, what="all 15 taps"
        )

        back = Viewer(envoy, match_id, "leaver", resume_after_seq=left_at).start()
        await until(
            lambda: back.last_seq >= witness.last_seq,
            timeout_s=30,
            what="the replay to reach the witness's newest seq",
        )
        missed = [(s.seq, s.total) for s in witness.swarms if s.seq > left_at]
        assert [(s.seq, s.total) for s in back.swarms] == missed
        assert_gap_free(back, after_seq=left_at)
        await back.stop()
    finally:
        await asyncio.gather(witness.stop(), leaver.stop())


async def test_killed_node_moves_its_viewers_without_a_gap(
    fanout: Mesh, match_id: str
) -> None:
    """Viewers of a killed node resume on the others through Envoy, losing nothing."""
    node = f"127.0.0.1:{fanout.layout.subscriber_port(0, 0)}"
    envoy = fanout.layout.envoy_address
    viewers = [
        Viewer(node, match_id, f"moved-{i}", reconnect_address=envoy).start()
        for i in range(20)
    ]
    try:
        await registered(viewers)
        async with ingest(fanout) as send:
            await send({match_id: 2})
            await until(
                lambda: all(v.total == 2 for v in viewers),
                timeout_s=SWARM_WAIT_S,
                what="the first swarm on the doomed node",
            )
            await asyncio.to_thread(fanout.kill, "subscriber-0-0")
            for taps in (3, 4):
                await send({match_id: taps})
                await asyncio.sleep(2.5)

        await until(
            lambda: all(v.total == 9 for v in viewers),
            timeout_s=SWARM_WAIT_S,
            what="moved viewers to count all 9 taps",
        )
        for viewer in viewers:
            assert viewer.reconnects >= 1
            assert_gap_free(viewer)
    finally:
        await asyncio.gather(*(v.stop() for v in viewers))
        if fanout.pid("subscriber-0-0") is None:
            await asyncio.to_thread(fanout.start, "subscriber-0-0")


async def test_viewer_that_stops_reading_does_not_delay_others(
    fanout: Mesh, match_id: str
) -> None:
    """Others get every swarm while one stream is never read; it catches up later."""
    envoy = fanout.layout.envoy_address
    readers = [Viewer(envoy, match_id, f"reader-{i}").start() for i in range(5)]
    async with grpc.aio.insecure_channel(envoy) as channel:
        stuck = emostream_pb2_grpc.SwarmFeedStub(channel).Subscribe(
            emostream_pb2.SubscribeRequest(match_id=match_id, viewer_id="stuck")
        )
        try:
            await registered(readers)
            async with ingest(fanout) as send:
                for taps in (1, 2, 3, 4):
                    await send({match_id: taps})
                    await asyncio.sleep(2.5)
            await until(
                lambda: all(r.total == 10 for r in readers),
                timeout_s=SWARM_WAIT_S,
                what="readers to count all 10 taps while one viewer is stuck",
            )

            caught_up: list[Swarm] = []
            while sum(s.total for s in caught_up) < 10:
                message = await asyncio.wait_for(stuck.read(), 20)
                assert message is not grpc.aio.EOF
                if message.notice == NOTICE_SWARM:
                    caught_up.append(message)
            assert caught_up[0].first_seq == 1
            assert all(
                b.first_seq == a.seq + 1 for a, b in itertools.pairwise(caught_up)
            )
        finally:
            stuck.cancel()
            await asyncio.gather(*(r.stop() for r in readers))


async def test_viewer_counts_follow_joins_and_leaves(
    fanout: Mesh, match_id: str
) -> None:
    """Swarms carry the node's viewer count, which rises and falls with streams."""
    node = f"127.0.0.1:{fanout.layout.subscriber_port(1, 1)}"
    staying = Viewer(node, match_id, "staying").start()
    leaving = [Viewer(node, match_id, f"leaving-{i}").start() for i in range(2)]
    try:
        await registered([staying, *leaving])
        async with ingest(fanout) as send:
            await send({match_id: 1})
            await until(lambda: staying.total == 1, timeout_s=SWARM_WAIT_S, what="1")
            await asyncio.gather(*(v.stop() for v in leaving))
            await asyncio.sleep(2.5)
            await send({match_id: 2})
            await until(lambda: staying.total == 3, timeout_s=SWARM_WAIT_S, what="3")

        assert [s.viewers for s in staying.swarms] == [3, 1]
    finally:
        await asyncio.gather(staying.stop(), *(v.stop() for v in leaving))


async def test_bad_subscribe_request_names_the_field(fanout: Mesh) -> None:
    """A viewer_id outside the allowed characters is INVALID_ARGUMENT naming it."""
    async with grpc.aio.insecure_channel(fanout.layout.envoy_address) as channel:
        call = emostream_pb2_grpc.SwarmFeedStub(channel).Subscribe(
            emostream_pb2.SubscribeRequest(match_id="m", viewer_id="no spaces")
        )
        with pytest.raises(grpc.aio.AioRpcError) as caught:
            await call.read()

    assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "viewer_id" in (caught.value.details() or "")
