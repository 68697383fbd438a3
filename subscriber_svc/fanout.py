"""The fan-out queues: one room per match, one small queue per viewer.

A swarm is serialized once per broadcast and the same bytes go to every
viewer of the match; ``viewers`` in it is the room's size at that moment.

Slow viewers. Each viewer's queue holds at most ``queue_max`` messages. When
a swarm arrives for a full queue, the swarms waiting at its tail and the new
one are merged into one message: counts summed per emoji (raw and shown),
totals summed, taps summed per bucket (buckets widened from 100 ms by
doubling until at most ``MAX_MERGED_TAP_BUCKETS`` remain, so a viewer stalled
for hours holds a message of bounded size), the window widened, first_seq..seq
covering the merged range, and viewers and published_at from the newest. The
queue then holds fewer messages again, so a slow viewer always receives the
whole range, later and coarser, and never makes the broadcast wait: offering
to a queue never blocks and never grows it past ``queue_max`` + 1 messages.

Order. A viewer gets each seq once and in order: swarms at or below what it
already has are skipped (a node that is behind the one the viewer came from),
and a jump in seq (history that did not reach back) is announced first with
NOTICE_HISTORY_GAP, whose first_seq..seq names the swarms lost to it.

The broadcast runs without awaiting, on the event loop that also registers
viewers, so a viewer that joins sees each swarm either in its replay or live,
never both and never neither.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import deque
from collections.abc import Iterable

from emostream.v1 import emostream_pb2

log = logging.getLogger(__name__)

Swarm = emostream_pb2.Swarm


class Delivery:
    """One message as queued for viewers; serialized at most once.

    The fields every viewer reads are copied out of the swarm once, so that
    offering it to thousands of viewers reads plain attributes.
    """

    __slots__ = ("_payload", "first_seq", "is_swarm", "seq", "swarm")

    def __init__(self, swarm: Swarm, payload: bytes | None = None) -> None:
        self.swarm = swarm
        self._payload = payload
        self.seq = swarm.seq
        self.first_seq = swarm.first_seq
        self.is_swarm = swarm.notice == emostream_pb2.NOTICE_SWARM

    @property
    def payload(self) -> bytes:
        if self._payload is None:
            self._payload = self.swarm.SerializeToString()
        return self._payload


class ViewerStream:
    """The messages waiting for one viewer's stream."""

    __slots__ = (
        "_queue",
        "_replay",
        "_waiter",
        "closed",
        "last_seq",
        "match_id",
        "queue_max",
        "room",
        "sent_seq",
        "viewer_id",
    )

    def __init__(self, room: MatchRoom, viewer_id: str, queue_max: int) -> None:
        self.room = room
        self.match_id = room.match_id
        self.viewer_id = viewer_id
        self.queue_max = queue_max
        self._queue: deque[Delivery] = deque()
        self._replay: deque[Swarm] = deque()
        self._waiter: asyncio.Future[None] | None = None
        self.closed = False
        # Newest seq queued (or replayed) and newest seq handed to the stream.
        self.last_seq = 0
        self.sent_seq = 0

    # Filling ----------------------------------------------------------------

    def offer(self, delivery: Delivery) -> None:
        """Queues a live swarm; never blocks, never grows the queue unbounded."""
        last_seq = self.last_seq
        if delivery.seq <= last_seq or self.closed:
            return
        queue = self._queue
        if last_seq and delivery.first_seq > last_seq + 1:
            queue.append(Delivery(self._gap(last_seq + 1, delivery.first_seq - 1)))
        self.last_seq = delivery.seq
        if len(queue) >= self.queue_max:
            self._coalesce(delivery)
        else:
            queue.append(delivery)
        waiter = self._waiter
        if waiter is not None:
            self._waiter = None
            if not waiter.done():
                waiter.set_result(None)

    def offer_idle(self, delivery: Delivery) -> None:
        """Queues a heartbeat, only when nothing else is waiting."""
        if not self._queue and not self._replay and not self.closed:
            self._queue.append(delivery)
            self._wake()

    def replay(self, resume_after_seq: int, history: Iterable[Swarm]) -> None:
        """Queues the kept swarms after ``resume_after_seq``, ahead of live ones."""
        missed = [s for s in history if s.seq > resume_after_seq]
        if missed and missed[0].seq > resume_after_seq + 1:
            self._replay.append(self._gap(resume_after_seq + 1, missed[0].seq - 1))
        self._replay.extend(missed)
        self.last_seq = missed[-1].seq if missed else resume_after_seq

    def finish(self, delivery: Delivery) -> None:
        """Drops what waits, queues ``delivery`` as the last message, ends."""
        self._replay.clear()
        self._queue.clear()
        self._queue.append(delivery)
        self.closed = True
        self._wake()

    def restart(self) -> None:
        """The log restarted and seqs count from 1 again."""
        self.last_seq = 0

    # Draining ---------------------------------------------------------------

    def next_nowait(self) -> bytes | None:
        """The next message to write, or None when nothing waits."""
        if self._replay:
            # Replayed swarms carry the viewer count of the moment they leave.
            swarm = Swarm()
            swarm.CopyFrom(self._replay.popleft())
            swarm.viewers = len(self.room.viewers)
            self.sent_seq = swarm.seq
            return swarm.SerializeToString()
        if self._queue:
            return self._send(self._queue.popleft())
        return None

    def wait(self) -> asyncio.Future[None]:
        """A future that is done when something is queued or the stream ends.

        Call it only when ``next_nowait`` returned None and the stream is not
        closed. The handler awaits the future itself: one wake-up per idle
        viewer per broadcast, with no coroutine of ours in between.
        """
        waiter = self._waiter = asyncio.get_running_loop().create_future()
        return waiter

    async def next(self) -> bytes | None:
        """Waits for the next message; None when the stream is to end."""
        while True:
            payload = self.next_nowait()
            if payload is not None:
                return payload
            if self.closed:
                return None
            await self.wait()

    def pending(self) -> int:
        return len(self._queue) + len(self._replay)

    # Inside -----------------------------------------------------------------

    def _send(self, delivery: Delivery) -> bytes:
        if (
            delivery.is_swarm
            or delivery.swarm.notice == emostream_pb2.NOTICE_HISTORY_GAP
        ):
            self.sent_seq = delivery.seq
        return delivery.payload

    def _coalesce(self, delivery: Delivery) -> None:
        queue = self._queue
        tail = [delivery.swarm]
        while queue and queue[-1].is_swarm:
            tail.append(queue.pop().swarm)
        tail.reverse()
        queue.append(Delivery(merge_swarms(tail)))

    def _gap(self, first_lost: int, last_lost: int) -> Swarm:
        return Swarm(
            match_id=self.match_id,
            notice=emostream_pb2.NOTICE_HISTORY_GAP,
            first_seq=first_lost,
            seq=last_lost,
            viewers=len(self.room.viewers),
        )

    def _wake(self) -> None:
        waiter = self._waiter
        if waiter is not None:
            self._waiter = None
            if not waiter.done():
                waiter.set_result(None)


def merge_swarms(swarms: list[Swarm]) -> Swarm:
    """One swarm covering ``swarms`` (in seq order), as a slow viewer gets it."""
    first, newest = swarms[0], swarms[-1]
    merged = Swarm(
        match_id=newest.match_id,
        seq=newest.seq,
        first_seq=first.first_seq or first.seq,
        notice=emostream_pb2.NOTICE_SWARM,
        window_start=first.window_start,
        window_end=newest.window_end,
        total=sum(s.total for s in swarms),
        viewers=newest.viewers,
        published_at=newest.published_at,
    )
    counts: dict[str, list[int]] = {}
    taps: dict[int, int] = {}
    for swarm in swarms:
        for count in swarm.emojis:
            raw_shown = counts.setdefault(count.emoji, [0, 0])
            raw_shown[0] += count.raw
            raw_shown[1] += count.shown
        for bucket in swarm.taps:
            taps[bucket.start_unix_ms] = (
                taps.get(bucket.start_unix_ms, 0) + bucket.count
            )
    for emoji, (raw, shown) in counts.items():
        merged.emojis.add(emoji=emoji, raw=raw, shown=shown)
    taps = _widen(taps)
    for start_unix_ms in sorted(taps):
        merged.taps.add(start_unix_ms=start_unix_ms, count=taps[start_unix_ms])
    return merged


MAX_MERGED_TAP_BUCKETS = 64
_TAP_BUCKET_MS = 100


def _widen(taps: dict[int, int]) -> dict[int, int]:
    """Tap buckets regrouped into wider ones until few enough remain."""
    width_ms = _TAP_BUCKET_MS
    while len(taps) > MAX_MERGED_TAP_BUCKETS:
        width_ms *= 2
        wider: dict[int, int] = {}
        for start_unix_ms, count in taps.items():
            start = start_unix_ms - start_unix_ms % width_ms
            wider[start] = wider.get(start, 0) + count
        taps = wider
    return taps


class MatchRoom:
    """A match on this node: its viewers and its last swarms."""

    __slots__ = ("history", "last_sent_s", "last_seq", "match_id", "viewers")

    def __init__(self, match_id: str, history_max: int) -> None:
        self.match_id = match_id
        self.viewers: set[ViewerStream] = set()
        self.history: deque[Swarm] = deque(maxlen=history_max)
        self.last_seq = 0
        self.last_sent_s = time.monotonic()


class Fanout:
    """Every match room of the node; the broadcast and the viewer registry."""

    def __init__(
        self,
        *,
        history_max: int,
        queue_max: int,
        heartbeat_s: float,
        room_idle_s: float,
    ) -> None:
        if queue_max < 2:
            raise ValueError("queue_max must be at least 2")
        self._history_max = history_max
        self._queue_max = queue_max
        self._heartbeat_s = heartbeat_s
        self._room_idle_s = room_idle_s
        self.rooms: dict[str, MatchRoom] = {}
        self.viewer_count = 0
        self.broadcasts = 0
        self.deliveries = 0

    # Viewers ------------------------------------------------------------------

    def join(
        self, match_id: str, viewer_id: str, resume_after_seq: int
    ) -> ViewerStream:
        """Registers a viewer; with ``resume_after_seq`` > 0 queues its replay."""
        room = self._room(match_id)
        viewer = ViewerStream(room, viewer_id, self._queue_max)
        if resume_after_seq > 0:
            viewer.replay(resume_after_seq, room.history)
        room.viewers.add(viewer)
        self.viewer_count += 1
        log.debug(
            "viewer.joined match=%s viewer=%s resume_after=%d viewers=%d",
            match_id,
            viewer_id,
            resume_after_seq,
            len(room.viewers),
        )
        return viewer

    def leave(self, viewer: ViewerStream) -> None:
        room = viewer.room
        if viewer in room.viewers:
            room.viewers.discard(viewer)
            self.viewer_count -= 1
        log.debug(
            "viewer.left match=%s viewer=%s seq=%d viewers=%d",
            viewer.match_id,
            viewer.viewer_id,
            viewer.sent_seq,
            len(room.viewers),
        )

    def viewers_of(self, match_id: str) -> int:
        room = self.rooms.get(match_id)
        return len(room.viewers) if room else 0

    # Swarms -------------------------------------------------------------------

    def publish(self, swarm: Swarm) -> None:
        """Keeps a sequenced swarm and queues it for every viewer of its match."""
        room = self._room(swarm.match_id)
        if swarm.seq <= room.last_seq:
            return
        if room.last_seq and swarm.seq != room.last_seq + 1:
            log.warning(
                "match.history_gap match=%s after=%d next=%d",
                room.match_id,
                room.last_seq,
                swarm.seq,
            )
            room.history.clear()
        room.history.append(swarm)
        room.last_seq = swarm.seq
        room.last_sent_s = time.monotonic()
        self.broadcasts += 1
        if not room.viewers:
            return

        swarm.viewers = len(room.viewers)
        delivery = Delivery(swarm, swarm.SerializeToString())
        for viewer in room.viewers:
            viewer.offer(delivery)
        self.deliveries += len(room.viewers)

    def heartbeat(self) -> None:
        """Heartbeats idle matches' viewers and forgets long-idle empty rooms."""
        now = time.monotonic()
        for match_id, room in list(self.rooms.items()):
            idle_s = now - room.last_sent_s
            if not room.viewers:
                if idle_s > self._room_idle_s:
                    del self.rooms[match_id]
                continue
            if idle_s < self._heartbeat_s:
                continue
            room.last_sent_s = now
            beat = Swarm(
                match_id=match_id,
                notice=emostream_pb2.NOTICE_HEARTBEAT,
                viewers=len(room.viewers),
            )
            delivery = Delivery(beat, beat.SerializeToString())
            for viewer in room.viewers:
                viewer.offer_idle(delivery)

    def restart(self) -> None:
        """The relay log restarted: seqs count from 1 again for every match."""
        for room in self.rooms.values():
            room.history.clear()
            room.last_seq = 0
            for viewer in room.viewers:
                viewer.restart()

    def drain(self) -> None:
        """Tells every viewer to reconnect elsewhere and ends their streams."""
        for room in self.rooms.values():
            for viewer in room.viewers:
                notice = Swarm(
                    match_id=room.match_id,
                    notice=emostream_pb2.NOTICE_DRAINING,
                    seq=viewer.sent_seq,
                    first_seq=viewer.sent_seq,
                    viewers=len(room.viewers),
                )
                viewer.finish(Delivery(notice))

    def _room(self, match_id: str) -> MatchRoom:
        room = self.rooms.get(match_id)
        if room is None:
            room = self.rooms[match_id] = MatchRoom(match_id, self._history_max)
        return room
