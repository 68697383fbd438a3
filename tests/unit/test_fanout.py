"""The fan-out queues, driven directly with recording viewers (no network)."""

from __future__ import annotations

import asyncio
import itertools

from emostream.v1 import emostream_pb2
from subscriber_svc.fanout import MAX_MERGED_TAP_BUCKETS, Fanout, ViewerStream
from subscriber_svc.feed_service import SwarmFeed

Swarm = emostream_pb2.Swarm


def make_fanout(queue_max: int = 3, history_max: int = 10) -> Fanout:
    return Fanout(
        history_max=history_max,
        queue_max=queue_max,
        heartbeat_s=15.0,
        room_idle_s=3600.0,
    )


def swarm(match_id: str, seq: int, **counts: int) -> Swarm:
    message = Swarm(
        match_id=match_id, seq=seq, first_seq=seq, total=sum(counts.values())
    )
    for emoji, raw in counts.items():
        message.emojis.add(emoji=emoji, raw=raw, shown=1)
    message.taps.add(start_unix_ms=1000 * seq, count=1)
    message.taps.add(start_unix_ms=1000 * seq + 100, count=2)
    return message


def drain_now(viewer: ViewerStream) -> list[Swarm]:
    """Everything the viewer's stream would write right now, decoded."""
    written = []
    while (payload := viewer.next_nowait()) is not None:
        written.append(Swarm.FromString(payload))
    return written


class RecordingViewer:
    """Reads one viewer's stream like the gRPC handler does, recording it."""

    def __init__(self, viewer: ViewerStream) -> None:
        self.viewer = viewer
        self.received: list[Swarm] = []

    async def read(self) -> None:
        while (payload := await self.viewer.next()) is not None:
            self.received.append(Swarm.FromString(payload))


def test_live_viewer_gets_every_swarm_of_its_match_in_order() -> None:
    """Swarms arrive once each, in seq order, with the room's viewer count."""
    fanout = make_fanout()
    viewer = fanout.join("a", "v1", 0)
    fanout.join("a", "v2", 0)
    other = fanout.join("b", "v3", 0)

    fanout.publish(swarm("a", 1, fire=2))
    fanout.publish(swarm("b", 1, clap=1))
    fanout.publish(swarm("a", 2, fire=3))
    fanout.publish(swarm("a", 2, fire=3))

    received = drain_now(viewer)
    assert [(s.match_id, s.seq, s.viewers) for s in received] == [
        ("a", 1, 2),
        ("a", 2, 2),
    ]
    assert [s.match_id for s in drain_now(other)] == ["b"]


def test_full_queue_merges_waiting_swarms_into_one_covering_range() -> None:
    """Past the queue bound the waiting swarms merge: counts summed, range kept."""
    fanout = make_fanout(queue_max=3)
    slow = fanout.join("a", "slow", 0)

    fanout.publish(swarm("a", 1, fire=1))
    fanout.publish(swarm("a", 2, fire=2))
    fanout.publish(swarm("a", 3, fire=3, clap=1))
    fanout.publish(swarm("a", 4, clap=5))
    fanout.join("a", "late", 0)
    fanout.publish(swarm("a", 5, fire=10))

    received = drain_now(slow)
    assert [(s.first_seq, s.seq) for s in received] == [(1, 4), (5, 5)]
    merged = received[0]
    assert {e.emoji: (e.raw, e.shown) for e in merged.emojis} == {
        "fire": (6, 3),
        "clap": (6, 2),
    }
    assert merged.total == 12
    assert [(t.start_unix_ms, t.count) for t in merged.taps] == [
        (1000, 1),
        (1100, 2),
        (2000, 1),
        (2100, 2),
        (3000, 1),
        (3100, 2),
        (4000, 1),
        (4100, 2),
    ]
    assert received[1].viewers == 2


def test_queue_never_grows_past_its_bound() -> None:
    """However many swarms pass, a viewer that never reads holds a bounded queue."""
    fanout = make_fanout(queue_max=4)
    stuck = fanout.join("a", "stuck", 0)

    for seq in range(1, 1001):
        fanout.publish(swarm("a", seq, fire=1))

    assert stuck.pending() <= 4
    received = drain_now(stuck)
    assert received[0].first_seq == 1
    assert received[-1].seq == 1000
    assert sum(s.total for s in received) == 1000
    assert all(b.first_seq == a.seq + 1 for a, b in itertools.pairwise(received))


def test_merged_message_of_a_stalled_viewer_stays_small() -> None:
    """Merging widens tap buckets instead of keeping every 100 ms bucket, so a
    viewer stalled for long holds a bounded message with every tap counted."""
    fanout = make_fanout(queue_max=4)
    stuck = fanout.join("a", "stuck", 0)

    for seq in range(1, 2001):
        fanout.publish(swarm("a", seq, fire=1))

    received = drain_now(stuck)
    assert all(len(s.taps) <= MAX_MERGED_TAP_BUCKETS for s in received)
    assert sum(b.count for s in received for b in s.taps) == 3 * 2000


async def test_blocked_viewer_does_not_delay_another() -> None:
    """A viewer that stops reading leaves the other viewers' deliveries untouched."""
    fanout = make_fanout(queue_max=2)
    fanout.join("a", "blocked", 0)
    reader = RecordingViewer(fanout.join("a", "reader", 0))
    read_task = asyncio.create_task(reader.read())

    for seq in range(1, 51):
        fanout.publish(swarm("a", seq, fire=1))
        await asyncio.sleep(0)

    await asyncio.wait_for(_until(lambda: len(reader.received) == 50), 2.0)
    assert [s.seq for s in reader.received] == list(range(1, 51))
    assert all(s.first_seq == s.seq for s in reader.received)
    read_task.cancel()


def test_resume_replays_missed_swarms_then_goes_live_without_duplicates() -> None:
    """A viewer resuming after seq N gets N+1.. from history, then live ones."""
    fanout = make_fanout(queue_max=3, history_max=10)
    for seq in range(1, 6):
        fanout.publish(swarm("a", seq, fire=seq))

    viewer = fanout.join("a", "back", 2)
    fanout.publish(swarm("a", 6, fire=6))
    fanout.publish(swarm("a", 5, fire=5))

    assert [(s.notice, s.seq, s.viewers) for s in drain_now(viewer)] == [
        (emostream_pb2.NOTICE_SWARM, 3, 1),
        (emostream_pb2.NOTICE_SWARM, 4, 1),
        (emostream_pb2.NOTICE_SWARM, 5, 1),
        (emostream_pb2.NOTICE_SWARM, 6, 1),
    ]


def test_resume_beyond_history_starts_with_a_gap_notice() -> None:
    """When history does not reach back, a HISTORY_GAP names the lost range."""
    fanout = make_fanout(history_max=3)
    for seq in range(1, 9):
        fanout.publish(swarm("a", seq))

    received = drain_now(fanout.join("a", "back", 2))

    gap = received[0]
    assert gap.notice == emostream_pb2.NOTICE_HISTORY_GAP
    assert (gap.first_seq, gap.seq) == (3, 5)
    assert [s.seq for s in received[1:]] == [6, 7, 8]


def test_viewer_ahead_of_the_node_gets_only_newer_swarms() -> None:
    """A viewer coming from a node that was ahead skips what it already has."""
    fanout = make_fanout()
    fanout.publish(swarm("a", 1))
    viewer = fanout.join("a", "ahead", 3)

    for seq in range(2, 6):
        fanout.publish(swarm("a", seq))

    assert [s.seq for s in drain_now(viewer)] == [4, 5]


def test_viewer_counts_follow_joins_and_leaves() -> None:
    """Each swarm carries the match's viewers on the node at that moment."""
    fanout = make_fanout()
    first = fanout.join("a", "v1", 0)
    second = fanout.join("a", "v2", 0)
    fanout.publish(swarm("a", 1))
    fanout.leave(second)
    fanout.publish(swarm("a", 2))
    fanout.join("a", "v3", 0)
    fanout.join("a", "v4", 0)
    fanout.publish(swarm("a", 3))

    assert [s.viewers for s in drain_now(first)] == [2, 1, 3]
    assert fanout.viewers_of("a") == 3


def test_heartbeat_reaches_idle_viewers_only() -> None:
    """An idle match's viewers with nothing waiting get a heartbeat."""
    fanout = Fanout(history_max=5, queue_max=3, heartbeat_s=0.0, room_idle_s=60.0)
    idle = fanout.join("a", "idle", 0)
    busy = fanout.join("a", "busy", 0)
    fanout.publish(swarm("a", 1))
    drain_now(idle)

    fanout.heartbeat()

    assert [s.notice for s in drain_now(idle)] == [emostream_pb2.NOTICE_HEARTBEAT]
    assert [s.notice for s in drain_now(busy)] == [emostream_pb2.NOTICE_SWARM]


async def test_drain_sends_draining_with_resume_point_and_ends_streams() -> None:
    """On drain each viewer gets NOTICE_DRAINING carrying its last seq, then ends."""
    fanout = make_fanout()
    reader = RecordingViewer(fanout.join("a", "v1", 0))
    read_task = asyncio.create_task(reader.read())
    fanout.publish(swarm("a", 1))
    await asyncio.wait_for(_until(lambda: len(reader.received) == 1), 2.0)

    fanout.drain()
    await asyncio.wait_for(read_task, 2.0)

    last = reader.received[-1]
    assert (last.notice, last.seq) == (emostream_pb2.NOTICE_DRAINING, 1)


def test_live_jump_in_seq_is_announced_as_gap() -> None:
    """A live viewer whose match skips seqs on this node is told which are lost."""
    fanout = make_fanout()
    viewer = fanout.join("a", "v1", 0)
    fanout.publish(swarm("a", 1))
    fanout.publish(swarm("a", 4))

    received = drain_now(viewer)
    assert [(s.notice, s.first_seq, s.seq) for s in received] == [
        (emostream_pb2.NOTICE_SWARM, 1, 1),
        (emostream_pb2.NOTICE_HISTORY_GAP, 2, 3),
        (emostream_pb2.NOTICE_SWARM, 4, 4),
    ]


async def _until(condition) -> None:
    while not condition():
        await asyncio.sleep(0.001)


class RecordingContext:
    """Stands in for the gRPC context: records what the handler writes."""

    def __init__(self) -> None:
        self.written: list[Swarm] = []

    async def write(self, payload: bytes) -> None:
        self.written.append(Swarm.FromString(payload))
        await asyncio.sleep(0)

    async def abort(self, code: object, details: str) -> None:
        raise AssertionError(f"aborted: {details}")


async def test_subscribe_writes_each_swarm_in_order_until_drained() -> None:
    """The handler writes every queued swarm once, in order, then ends on drain."""
    fanout = make_fanout(queue_max=100)
    feed = SwarmFeed(fanout)
    context = RecordingContext()
    request = emostream_pb2.SubscribeRequest(match_id="a", viewer_id="v1")
    subscribe = feed.subscribe(request, context)  # type: ignore[arg-type]
    handler_task = asyncio.create_task(subscribe)
    await asyncio.wait_for(_until(lambda: fanout.viewers_of("a") == 1), 2.0)

    for seq in range(1, 31):
        fanout.publish(swarm("a", seq, fire=1))
        if seq % 7 == 0:
            await asyncio.sleep(0)
    await asyncio.wait_for(_until(lambda: len(context.written) == 30), 2.0)
    fanout.drain()
    await asyncio.wait_for(handler_task, 2.0)

    assert [(s.first_seq, s.seq) for s in context.written[:30]] == [
        (seq, seq) for seq in range(1, 31)
    ]
    last = context.written[-1]
    assert (last.notice, last.seq) == (emostream_pb2.NOTICE_DRAINING, 30)
    assert fanout.viewers_of("a") == 0
