"""SwarmRelay.Follow: serves a RelayLog to the next hop of the tree."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator

import grpc

from emostream.v1 import internal_pb2, internal_pb2_grpc
from publisher_svc.relay_log import RelayLog

log = logging.getLogger(__name__)


class SwarmRelayServicer(internal_pb2_grpc.SwarmRelayServicer):
    """Replays what a follower missed, then streams live, with heartbeats."""

    def __init__(self, relay_log: RelayLog, *, heartbeat_s: float) -> None:
        self._log = relay_log
        self._heartbeat_s = heartbeat_s

    async def Follow(
        self,
        request: internal_pb2.FollowRequest,
        context: grpc.aio.ServicerContext,
    ) -> AsyncIterator[internal_pb2.RelayMessage]:
        relay_log = self._log
        log_id = relay_log.log_id
        cursor, gap = self._start(request.resume_after_relay_seq)
        log.info(
            "follower.joined follower=%s resume_after=%d start=%d gap=%s",
            request.follower_id,
            request.resume_after_relay_seq,
            cursor,
            gap,
        )
        try:
            while not relay_log.closed:
                if relay_log.log_id != log_id:
                    # The log restarted under us: send the new one from its start.
                    log_id, cursor, gap = relay_log.log_id, 0, True
                batch = relay_log.after(cursor)
                if batch and batch[0].relay_seq != cursor + 1:
                    gap = True
                for message in batch:
                    if gap:
                        message = _with_gap(message)
                        gap = False
                    yield message
                    cursor = message.relay_seq
                if batch:
                    continue
                if not await relay_log.wait_newer(cursor, self._heartbeat_s):
                    yield internal_pb2.RelayMessage(
                        relay_seq=relay_log.newest_relay_seq, log_id=relay_log.log_id
                    )
        finally:
            log.info(
                "follower.left follower=%s relay_seq=%d", request.follower_id, cursor
            )

    def _start(self, resume_after: int) -> tuple[int, bool]:
        """The cursor to start from and whether the first message is a gap.

        0 is live. A resume point beyond the newest message belongs to another
        log (or to a hop that is ahead of this one): the whole history is
        replayed, and the follower drops what it already has.
        """
        relay_log = self._log
        if resume_after == 0:
            return relay_log.newest_relay_seq, False
        if resume_after > relay_log.newest_relay_seq:
            return relay_log.oldest_relay_seq - 1, True
        return resume_after, relay_log.oldest_relay_seq > resume_after + 1


def _with_gap(message: internal_pb2.RelayMessage) -> internal_pb2.RelayMessage:
    flagged = internal_pb2.RelayMessage()
    flagged.CopyFrom(message)
    flagged.history_gap = True
    return flagged
