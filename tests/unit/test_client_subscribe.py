"""Client.subscribe against a real local SwarmFeed server playing a script."""

from __future__ import annotations

import asyncio
import socket
from collections.abc import AsyncIterator
from dataclasses import dataclass

import grpc
import pytest

from emostream import Backoff, Client, InvalidArgument, Unavailable
from emostream.v1 import emostream_pb2, emostream_pb2_grpc

FAST = Backoff(initial_s=0.01, max_s=0.05)


# The scripted server -----------------------------------------------------------


@dataclass(frozen=True)
class Upto:
    """Send every swarm of the history after the resume point, up to ``seq``."""

    seq: int


@dataclass(frozen=True)
class Send:
    """Send this seq whatever the resume point (to provoke duplicates)."""

    seq: int
    first_seq: int | None = None


@dataclass(frozen=True)
class Heartbeat:
    pass


@dataclass(frozen=True)
class Gap:
    """A history-gap notice for the lost seqs ``first_seq``..``seq``."""

    first_seq: int
    seq: int


@dataclass(frozen=True)
class Drain:
    """NOTICE_DRAINING, then the stream stays open until the viewer leaves."""


@dataclass(frozen=True)
class Drop:
    """End the stream with ``code``."""

    code: grpc.StatusCode = grpc.StatusCode.UNAVAILABLE


Step = Upto | Send | Heartbeat | Gap | Drain | Drop


def swarm(match_id: str, seq: int, first_seq: int | None = None) -> emostream_pb2.Swarm:
    return emostream_pb2.Swarm(
        match_id=match_id,
        seq=seq,
        first_seq=first_seq or seq,
        notice=emostream_pb2.NOTICE_SWARM,
        emojis=[emostream_pb2.EmojiCount(emoji="🔥", raw=seq, shown=1)],
        total=seq,
    )


class ScriptedFeed(emostream_pb2_grpc.SwarmFeedServicer):
    """Plays ``scripts[i]`` on the i-th Subscribe call; later calls stay idle."""

    def __init__(self, scripts: list[list[Step]]) -> None:
        self.scripts = scripts
        self.requests: list[emostream_pb2.SubscribeRequest] = []

    async def Subscribe(
        self,
        request: emostream_pb2.SubscribeRequest,
        context: grpc.aio.ServicerContext,
    ) -> AsyncIterator[emostream_pb2.Swarm]:
        self.requests.append(request)
        index = len(self.requests) - 1
        steps = self.scripts[index] if index < len(self.scripts) else []
        match_id = request.match_id
        sent = request.resume_after_seq
        for step in steps:
            if isinstance(step, Upto):
                for seq in range(sent + 1, step.seq + 1):
                    yield swarm(match_id, seq)
                sent = max(sent, step.seq)
            elif isinstance(step, Send):
                yield swarm(match_id, step.seq, step.first_seq)
                sent = max(sent, step.seq)
            elif isinstance(step, Heartbeat):
                yield emostream_pb2.Swarm(
                    match_id=match_id, notice=emostream_pb2.NOTICE_HEARTBEAT, viewers=3
                )
            elif isinstance(step, Gap):
                yield emostream_pb2.Swarm(
                    match_id=match_id,
                    notice=emostream_pb2.NOTICE_HISTORY_GAP,
                    first_seq=step.first_seq,
                    seq=step.seq,
                )
                sent = max(sent, step.seq)
            elif isinstance(step, Drain):
                yield emostream_pb2.Swarm(
                    match_id=match_id, notice=emostream_pb2.NOTICE_DRAINING
                )
            elif isinstance(step, Drop):
                await context.abort(step.code, "scripted end")
        await asyncio.Event().wait()


@pytest.fixture
async def feed_server() -> AsyncIterator[tuple[grpc.aio.Server, int]]:
    server = grpc.aio.server()
    port = server.add_insecure_port("127.0.0.1:0")
    await server.start()
    try:
        yield server, port
    finally:
        await server.stop(0)


async def start_feed(
    feed_server: tuple[grpc.aio.Server, int], scripts: list[list[Step]]
) -> tuple[ScriptedFeed, str]:
    server, port = feed_server
    feed = ScriptedFeed(scripts)
    emostream_pb2_grpc.add_SwarmFeedServicer_to_server(feed, server)
    return feed, f"127.0.0.1:{port}"


async def collect(
    address: str, match_id: str, count: int, **options: object
) -> list[emostream_pb2.Swarm]:
    """The first ``count`` messages subscribe yields, within 10 s."""
    got: list[emostream_pb2.Swarm] = []
    async with Client(address) as client, asyncio.timeout(10):
        async for message in client.subscribe(match_id, backoff=FAST, **options):  # type: ignore[arg-type]
            got.append(message)
            if len(got) == count:
                break
    return got


# The tests ---------------------------------------------------------------------


async def test_reconnects_after_broken_stream_without_gap_or_duplicate(
    feed_server: tuple[grpc.aio.Server, int], match_id: str
) -> None:
    """After two broken streams the viewer sees seqs 1..9 once each, in order."""
    feed, address = await start_feed(
        feed_server,
        [[Upto(3), Drop()], [Upto(6), Drop(grpc.StatusCode.INTERNAL)], [Upto(9)]],
    )

    got = await collect(address, match_id, 9)

    assert [s.seq for s in got] == list(range(1, 10))
    assert [r.resume_after_seq for r in feed.requests] == [0, 3, 6]


async def test_resume_skips_swarms_the_server_sends_twice(
    feed_server: tuple[grpc.aio.Server, int], match_id: str
) -> None:
    """A node that replays already-seen seqs after a reconnect yields no duplicate."""
    _feed, address = await start_feed(
        feed_server,
        [[Upto(4), Drop()], [Send(2), Send(3), Send(4), Send(5), Send(6)]],
    )

    got = await collect(address, match_id, 6)

    assert [s.seq for s in got] == [1, 2, 3, 4, 5, 6]


async def test_draining_reconnects_at_once_and_resumes(
    feed_server: tuple[grpc.aio.Server, int], match_id: str
) -> None:
    """NOTICE_DRAINING is not yielded; the next stream resumes after the last seq."""
    feed, address = await start_feed(feed_server, [[Upto(5), Drain()], [Upto(8)]])

    got = await collect(address, match_id, 8, resume_after_seq=0)

    assert [s.seq for s in got] == list(range(1, 9))
    assert all(s.notice == emostream_pb2.NOTICE_SWARM for s in got)
    assert [r.resume_after_seq for r in feed.requests] == [0, 5]


async def test_first_request_carries_the_callers_resume_point(
    feed_server: tuple[grpc.aio.Server, int], match_id: str
) -> None:
    """resume_after_seq=N asks for the swarms after N and yields from N+1."""
    feed, address = await start_feed(feed_server, [[Upto(12)]])

    got = await collect(address, match_id, 2, resume_after_seq=10, viewer_id="v-1")

    assert [s.seq for s in got] == [11, 12]
    assert feed.requests[0].viewer_id == "v-1"
    assert feed.requests[0].match_id == match_id


async def test_heartbeats_are_hidden_unless_asked_for(
    feed_server: tuple[grpc.aio.Server, int], match_id: str
) -> None:
    """Heartbeats are skipped by default and yielded with heartbeats=True."""
    script: list[Step] = [Heartbeat(), Upto(1), Heartbeat(), Upto(2)]
    _feed, address = await start_feed(feed_server, [script, script])

    hidden = await collect(address, match_id, 2)
    shown = await collect(address, match_id, 4, heartbeats=True)

    assert [s.seq for s in hidden] == [1, 2]
    assert [s.notice for s in shown] == [
        emostream_pb2.NOTICE_HEARTBEAT,
        emostream_pb2.NOTICE_SWARM,
        emostream_pb2.NOTICE_HEARTBEAT,
        emostream_pb2.NOTICE_SWARM,
    ]


async def test_history_gap_is_yielded_and_swarms_follow(
    feed_server: tuple[grpc.aio.Server, int], match_id: str
) -> None:
    """A gap notice is yielded as it comes, then the swarms after the lost ones."""
    _feed, address = await start_feed(
        feed_server, [[Upto(2), Drop()], [Gap(3, 6), Upto(8)]]
    )

    got = await collect(address, match_id, 5)

    assert [(s.notice, s.seq) for s in got] == [
        (emostream_pb2.NOTICE_SWARM, 1),
        (emostream_pb2.NOTICE_SWARM, 2),
        (emostream_pb2.NOTICE_HISTORY_GAP, 6),
        (emostream_pb2.NOTICE_SWARM, 7),
        (emostream_pb2.NOTICE_SWARM, 8),
    ]
    assert got[2].first_seq == 3


async def test_merged_swarm_is_yielded_as_it_is(
    feed_server: tuple[grpc.aio.Server, int], match_id: str
) -> None:
    """A swarm covering seqs 3..5 is yielded once, and resuming continues after 5."""
    feed, address = await start_feed(
        feed_server, [[Upto(2), Send(5, first_seq=3), Drop()], [Upto(6)]]
    )

    got = await collect(address, match_id, 4)

    assert [(s.first_seq, s.seq) for s in got] == [(1, 1), (2, 2), (3, 5), (6, 6)]
    assert feed.requests[1].resume_after_seq == 5


async def test_invalid_subscription_raises_naming_the_field(
    feed_server: tuple[grpc.aio.Server, int], match_id: str
) -> None:
    """INVALID_ARGUMENT is not retried: it is raised with the field named."""

    class Refusing(emostream_pb2_grpc.SwarmFeedServicer):
        async def Subscribe(self, request, context):  # type: ignore[no-untyped-def]
            await context.abort(
                grpc.StatusCode.INVALID_ARGUMENT, "viewer_id: may contain only ..."
            )
            yield  # pragma: no cover - makes this an async generator

    server, port = feed_server
    emostream_pb2_grpc.add_SwarmFeedServicer_to_server(Refusing(), server)

    with pytest.raises(InvalidArgument) as raised:
        await collect(f"127.0.0.1:{port}", match_id, 1, viewer_id="bad viewer")

    assert raised.value.field == "viewer_id"


async def test_gives_up_after_max_attempts_when_nothing_listens(match_id: str) -> None:
    """With max_attempts the stream raises Unavailable instead of retrying forever."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    # The port was free a moment ago and nothing listens on it now.

    with pytest.raises(Unavailable):
        await collect(f"127.0.0.1:{port}", match_id, 1, max_attempts=3)
