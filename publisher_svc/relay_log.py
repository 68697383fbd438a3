"""The relay log: the recent RelayMessages of the tree, shared by every hop.

Messages are kept in relay_seq order without holes; a follower that asks for
messages after some relay_seq reads them from here, then waits for newer ones.
Followers hold only a cursor, so a slow follower costs no memory here.
"""

from __future__ import annotations

import asyncio
import logging
from collections import deque
from collections.abc import Iterable

from emostream.v1 import internal_pb2

log = logging.getLogger(__name__)


class RelayLog:
    """The last ``capacity`` relay messages of one log, with a wake-up for waiters."""

    def __init__(
        self,
        *,
        capacity: int,
        log_id: str = "",
        newest_relay_seq: int = 0,
        history: Iterable[internal_pb2.RelayMessage] = (),
    ) -> None:
        if capacity < 1:
            raise ValueError("capacity must be at least 1")
        self.capacity = capacity
        self.log_id = log_id
        self.newest_relay_seq = newest_relay_seq
        self._messages: deque[internal_pb2.RelayMessage] = deque(maxlen=capacity)
        self._messages.extend(history)
        self._changed: asyncio.Future[None] | None = None
        self.closed = False

    # Reading ----------------------------------------------------------------

    @property
    def oldest_relay_seq(self) -> int:
        """relay_seq of the oldest kept message; newest + 1 when nothing is kept."""
        if not self._messages:
            return self.newest_relay_seq + 1
        return self._messages[0].relay_seq

    def messages(self) -> list[internal_pb2.RelayMessage]:
        return list(self._messages)

    def after(
        self, relay_seq: int, *, limit: int = 256
    ) -> list[internal_pb2.RelayMessage]:
        """Up to ``limit`` kept messages with a relay_seq above ``relay_seq``."""
        start = max(relay_seq + 1 - self.oldest_relay_seq, 0)
        end = min(start + limit, len(self._messages))
        return [self._messages[i] for i in range(start, end)]

    async def wait_newer(self, relay_seq: int, timeout_s: float) -> bool:
        """Waits until the log moves past ``relay_seq``, changes or closes.

        Returns False when ``timeout_s`` passed with nothing new.
        """
        if self.newest_relay_seq > relay_seq or self.closed:
            return True
        if self._changed is None or self._changed.done():
            self._changed = asyncio.get_running_loop().create_future()
        try:
            await asyncio.wait_for(asyncio.shield(self._changed), timeout_s)
        except TimeoutError:
            return False
        return True

    # Writing ----------------------------------------------------------------

    def append(self, message: internal_pb2.RelayMessage) -> None:
        """Adds a message that already carries its relay_seq.

        A message that does not follow the newest one (the upstream lost
        history) restarts the kept history at that message, so what is kept
        never has holes.
        """
        if message.relay_seq != self.newest_relay_seq + 1 and self._messages:
            log.warning(
                "relay.discontinuity log_id=%s newest=%d next=%d",
                self.log_id,
                self.newest_relay_seq,
                message.relay_seq,
            )
            self._messages.clear()
        self._messages.append(message)
        self.newest_relay_seq = message.relay_seq
        self._wake()

    def extend(self, messages: Iterable[internal_pb2.RelayMessage]) -> None:
        for message in messages:
            self.append(message)

    def reset(self, log_id: str) -> None:
        """Forgets everything: the upstream log restarted under ``log_id``."""
        log.warning("relay.log_restarted old=%s new=%s", self.log_id, log_id)
        self.log_id = log_id
        self.newest_relay_seq = 0
        self._messages.clear()
        self._wake()

    def close(self) -> None:
        """Wakes every waiter for good; followers then end their streams."""
        self.closed = True
        self._wake()

    def _wake(self) -> None:
        if self._changed is not None and not self._changed.done():
            self._changed.set_result(None)
