"""The asyncio client: send taps to EmoStream and follow a match's swarms."""

from __future__ import annotations

import asyncio
import datetime as dt
import logging
import random
import re
from collections.abc import AsyncIterator, Iterable
from dataclasses import dataclass, field
from types import TracebackType
from typing import Any

import grpc
from google.protobuf import timestamp_pb2
from google.rpc import error_details_pb2, status_pb2

from emostream.runtime import CHANNEL_OPTIONS
from emostream.v1 import emostream_pb2, emostream_pb2_grpc

log = logging.getLogger(__name__)

DEFAULT_ADDRESS = "127.0.0.1:8080"

# The ingest service refuses a SendEmojis call with more items than this
# (its default; a deployment may lower it, see ``Client(max_batch=...)``).
MAX_BATCH = 10_000

Swarm = emostream_pb2.Swarm
Notice = emostream_pb2.Notice

# Names of request fields a server may name when it refuses input.
_FIELD_NAMES = (
    "match_id",
    "user_id",
    "emoji_type",
    "timestamp",
    "emojis",
    "viewer_id",
    "resume_after_seq",
)
_FIELD_PATTERN = re.compile(r"\b(" + "|".join(_FIELD_NAMES) + r")\b")
_ITEM_FIELD_PATTERN = re.compile(r"emojis\[\d+\]\.(\w+)")
# How the ingest service states its limit: "emojis: at most 10000 per call".
_BATCH_LIMIT_PATTERN = re.compile(r"at most (\d+) per call")
_STATUS_DETAILS_KEY = "grpc-status-details-bin"


# Errors ------------------------------------------------------------------------


class EmoStreamError(Exception):
    """Base of every error the client raises; ``code`` is the gRPC status."""

    retriable = False

    def __init__(self, message: str, *, code: grpc.StatusCode | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.code = code


class InvalidArgument(EmoStreamError):
    """The server refused the input; ``field`` names the field at fault.

    ``reason`` is why, without the field name; ``field`` is None when the
    server's message names no known field.
    """

    def __init__(
        self,
        message: str,
        *,
        field: str | None = None,
        code: grpc.StatusCode | None = grpc.StatusCode.INVALID_ARGUMENT,
    ) -> None:
        super().__init__(message, code=code)
        self.field = field
        # The message without a leading "<field>: ", as the server words it.
        prefix = f"{field}: "
        self.reason = message.removeprefix(prefix) if field else message


class InvalidEmoji(InvalidArgument):
    """The emoji is not exactly one emoji."""


class Unavailable(EmoStreamError):
    """No server could be reached, or the connection broke mid-call."""

    retriable = True


class Overloaded(EmoStreamError):
    """The server is shedding load (RESOURCE_EXHAUSTED); the call was refused."""

    retriable = True


class MessageTooLarge(EmoStreamError):
    """The request is over the server's message size limit (4 MiB by default);
    sending it again cannot help, a smaller batch can."""


class DeadlineExceeded(EmoStreamError):
    """The call did not finish in time; it may or may not have taken effect."""


class ServerError(EmoStreamError):
    """Any other failure reported by the server or by the proxy in front of it."""


def translate_error(error: grpc.RpcError) -> EmoStreamError:
    """Turns a gRPC error into the matching ``EmoStreamError``."""
    code = error.code() if hasattr(error, "code") else None
    details = (error.details() if hasattr(error, "details") else None) or ""
    if code == grpc.StatusCode.INVALID_ARGUMENT:
        name = _field_of(error, details)
        kind = InvalidEmoji if name == "emoji_type" else InvalidArgument
        return kind(details or "invalid argument", field=name, code=code)
    if code == grpc.StatusCode.UNAVAILABLE:
        return Unavailable(details or "unavailable", code=code)
    if code == grpc.StatusCode.RESOURCE_EXHAUSTED:
        if "larger than max" in details:
            return MessageTooLarge(details, code=code)
        return Overloaded(details or "overloaded", code=code)
    if code == grpc.StatusCode.DEADLINE_EXCEEDED:
        return DeadlineExceeded(details or "deadline exceeded", code=code)
    name = code.name if code is not None else "UNKNOWN"
    return ServerError(f"{name}: {details}" if details else name, code=code)


def _field_of(error: grpc.RpcError, details: str) -> str | None:
    """The field a refusal names: from a BadRequest detail, else the message."""
    trailing: Any = (
        error.trailing_metadata() if hasattr(error, "trailing_metadata") else None
    )
    for key, value in trailing or ():
        if key != _STATUS_DETAILS_KEY or not isinstance(value, bytes):
            continue
        status = status_pb2.Status.FromString(value)
        for detail in status.details:
            bad_request = error_details_pb2.BadRequest()
            if detail.Unpack(bad_request) and bad_request.field_violations:
                return _last_field_name(bad_request.field_violations[0].field)
    return _last_field_name(details)


def _last_field_name(text: str) -> str | None:
    # "emojis[3].emoji_type" names emoji_type; otherwise the first name wins.
    item = _ITEM_FIELD_PATTERN.search(text)
    if item is not None:
        return item.group(1)
    found = _FIELD_PATTERN.search(text)
    return found.group(1) if found else None


# Values ------------------------------------------------------------------------


@dataclass(frozen=True)
class Tap:
    """One viewer's tap; ``at`` None means now, stamped when it is sent."""

    match_id: str
    user_id: str
    emoji: str
    at: dt.datetime | None = None


@dataclass(frozen=True)
class Rejection:
    """One refused item of ``send_many``: its index in the input, field, reason."""

    index: int
    field: str
    reason: str


@dataclass
class BatchResult:
    """What ``send_many`` achieved: accepted count and each refused item."""

    accepted: int = 0
    rejected: list[Rejection] = field(default_factory=list)
    # Taps the server answered for (accepted or refused).
    sent: int = 0

    def refused_by_field(self) -> dict[str, int]:
        """How many items were refused, per field at fault."""
        counts: dict[str, int] = {}
        for rejection in self.rejected:
            counts[rejection.field] = counts.get(rejection.field, 0) + 1
        return counts


@dataclass(frozen=True)
class Backoff:
    """Capped exponential backoff, each pause drawn from the upper half of its step."""

    initial_s: float = 0.1
    max_s: float = 5.0
    multiplier: float = 2.0

    def delay_s(self, attempt: int) -> float:
        """The pause before retry number ``attempt`` (1-based)."""
        ceiling = min(self.max_s, self.initial_s * self.multiplier ** (attempt - 1))
        return random.uniform(ceiling / 2, ceiling)


# Subscribe outcomes that end the stream for good rather than reconnecting.
_FATAL_STREAM_CODES = frozenset(
    {
        grpc.StatusCode.INVALID_ARGUMENT,
        grpc.StatusCode.NOT_FOUND,
        grpc.StatusCode.PERMISSION_DENIED,
        grpc.StatusCode.UNAUTHENTICATED,
        grpc.StatusCode.UNIMPLEMENTED,
        grpc.StatusCode.FAILED_PRECONDITION,
    }
)


# The client --------------------------------------------------------------------


class Client:
    """An asyncio client for EmoStream's public API (Envoy's listener by default).

    Use it as ``async with Client(address) as client:``; it opens one channel
    lazily and closes it on exit. Calls that fail with UNAVAILABLE or
    RESOURCE_EXHAUSTED are retried ``retries`` times with capped backoff.
    """

    def __init__(
        self,
        address: str = DEFAULT_ADDRESS,
        *,
        timeout_s: float = 10.0,
        retries: int = 3,
        retry_backoff: Backoff | None = None,
        max_batch: int = MAX_BATCH,
    ) -> None:
        if max_batch < 1:
            raise ValueError("max_batch must be at least 1")
        if retries < 0:
            raise ValueError("retries must not be negative")
        self.address = address
        self.timeout_s = timeout_s
        self.retries = retries
        self.retry_backoff = retry_backoff or Backoff(initial_s=0.1, max_s=1.0)
        self.max_batch = max_batch
        self._channel: grpc.aio.Channel | None = None

    async def __aenter__(self) -> Client:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()

    async def close(self) -> None:
        """Closes the channel; open calls and streams end with it."""
        if self._channel is not None:
            channel, self._channel = self._channel, None
            await channel.close()

    def _open(self) -> grpc.aio.Channel:
        if self._channel is None:
            self._channel = grpc.aio.insecure_channel(
                self.address, options=CHANNEL_OPTIONS
            )
        return self._channel

    # Sending -------------------------------------------------------------------

    async def send(
        self,
        match_id: str,
        user_id: str,
        emoji: str,
        *,
        at: dt.datetime | None = None,
    ) -> str:
        """Sends one tap; returns the emoji in the canonical form it is counted as.

        ``at`` is when the viewer tapped (aware, or naive UTC); None means now.
        A failure with UNAVAILABLE or RESOURCE_EXHAUSTED is retried: a tap
        whose first attempt reached the server but whose answer was lost may
        then be counted twice. Taps are counted by the thousand, so one extra
        tap is preferred to a lost one; pass ``retries=0`` to the client to
        send at most once.
        """
        request = _request(Tap(match_id, user_id, emoji, at), _now())
        stub = emostream_pb2_grpc.EmojiIngestStub(self._open())
        reply = await self._with_retries(
            "send", lambda: stub.SendEmoji(request, timeout=self.timeout_s)
        )
        return str(reply.emoji_type)

    async def send_many(self, taps: Iterable[Tap | tuple[Any, ...]]) -> BatchResult:
        """Sends taps in SendEmojis calls of at most ``max_batch`` items.

        Items may be ``Tap`` values or tuples ``(match_id, user_id, emoji[,
        at])``. Refused items come back with their index in ``taps``; the good
        ones are accepted. When the server refuses a call as too large and
        states its limit, the client lowers ``max_batch`` to it and sends the
        same taps again in smaller calls. Retries as ``send`` does, with the
        same caveat: a retried batch that had in fact been accepted is counted
        twice.
        """
        result = BatchResult()
        now = _now()
        requests: list[emostream_pb2.SendEmojiRequest] = []
        for item in taps:
            tap = item if isinstance(item, Tap) else Tap(*item)
            requests.append(_request(tap, now))
            if len(requests) >= self.max_batch:
                await self._send_batch(requests, result, offset=result.sent)
                requests = []
        if requests:
            await self._send_batch(requests, result, offset=result.sent)
        return result

    async def _send_batch(
        self,
        requests: list[emostream_pb2.SendEmojiRequest],
        result: BatchResult,
        *,
        offset: int,
    ) -> None:
        stub = emostream_pb2_grpc.EmojiIngestStub(self._open())
        start = 0
        while start < len(requests):
            chunk = requests[start : start + self.max_batch]
            batch = emostream_pb2.SendEmojisRequest(emojis=chunk)
            try:
                reply = await self._with_retries(
                    "send_many",
                    lambda b=batch: stub.SendEmojis(b, timeout=self.timeout_s),
                )
            except InvalidArgument as exc:
                limit = _stated_batch_limit(exc)
                if limit is None or limit >= len(chunk):
                    raise
                log.info("batch.limit_lowered max_batch=%d", limit)
                self.max_batch = limit
                continue
            result.accepted += reply.accepted
            result.rejected.extend(
                Rejection(offset + start + r.index, r.field, r.reason)
                for r in reply.rejected
            )
            result.sent += len(chunk)
            start += len(chunk)

    async def _with_retries(self, what: str, call: Any) -> Any:
        attempt = 0
        while True:
            try:
                return await call()
            except grpc.RpcError as exc:
                error = translate_error(exc)
            attempt += 1
            if not error.retriable or attempt > self.retries:
                raise error
            delay_s = self.retry_backoff.delay_s(attempt)
            log.warning(
                "call.retrying call=%s attempt=%d code=%s delay_s=%.2f",
                what,
                attempt,
                error.code.name if error.code else None,
                delay_s,
            )
            await asyncio.sleep(delay_s)

    # Following -----------------------------------------------------------------

    async def subscribe(
        self,
        match_id: str,
        *,
        viewer_id: str | None = None,
        resume_after_seq: int = 0,
        heartbeats: bool = False,
        backoff: Backoff | None = None,
        max_attempts: int | None = None,
    ) -> AsyncIterator[Swarm]:
        """Yields the match's swarms in seq order, reconnecting by itself.

        After a broken stream it reconnects with capped exponential backoff and
        resumes after the last seq it yielded, so no swarm is yielded twice and
        none is skipped while the server's history reaches back. On
        NOTICE_DRAINING it reconnects at once (through Envoy, to another node).
        Heartbeats are yielded only with ``heartbeats=True``. A
        NOTICE_HISTORY_GAP message is always yielded, as the server sent it:
        some swarms after the last one yielded are lost to this viewer, and
        the swarms after the gap follow. Merged swarms (``first_seq < seq``)
        are yielded as they come.

        ``max_attempts`` bounds consecutive failed connection attempts (None:
        never give up); the last error is then raised. Errors that retrying
        cannot fix (INVALID_ARGUMENT, UNIMPLEMENTED...) are raised at once.
        """
        pause = backoff or Backoff()
        viewer = viewer_id or f"sdk-{random.getrandbits(48):012x}"
        last_seq = resume_after_seq
        failures = 0
        drains_in_a_row = 0

        while True:
            stub = emostream_pb2_grpc.SwarmFeedStub(self._open())
            request = emostream_pb2.SubscribeRequest(
                match_id=match_id, viewer_id=viewer, resume_after_seq=last_seq
            )
            call = stub.Subscribe(request)
            drained = False
            error: EmoStreamError | None = None
            try:
                async for message in call:
                    failures = 0
                    if message.notice == emostream_pb2.NOTICE_DRAINING:
                        drained = True
                        break
                    drains_in_a_row = 0
                    if message.notice == emostream_pb2.NOTICE_HEARTBEAT:
                        if heartbeats:
                            yield message
                        continue
                    if message.notice == emostream_pb2.NOTICE_HISTORY_GAP:
                        # Passed on as sent. last_seq stays put: the swarms
                        # after the gap still follow and are yielded by seq.
                        yield message
                        continue
                    if message.seq <= last_seq:
                        continue
                    last_seq = message.seq
                    yield message
            except grpc.RpcError as exc:
                if exc.code() in _FATAL_STREAM_CODES:
                    raise translate_error(exc) from None
                error = translate_error(exc)
            finally:
                call.cancel()

            if drained:
                # Straight to another node; only a node that drains again and
                # again before sending anything is met with backoff.
                drains_in_a_row += 1
                log.info(
                    "subscribe.draining match=%s viewer=%s resume_after_seq=%d",
                    match_id,
                    viewer,
                    last_seq,
                )
                if drains_in_a_row > 1:
                    await asyncio.sleep(pause.delay_s(drains_in_a_row - 1))
                continue

            failures += 1
            if max_attempts is not None and failures >= max_attempts:
                raise error or Unavailable("the stream ended", code=None)
            delay_s = pause.delay_s(failures)
            log.warning(
                "subscribe.reconnecting match=%s viewer=%s resume_after_seq=%d "
                "error=%s delay_s=%.2f",
                match_id,
                viewer,
                last_seq,
                error or "stream ended",
                delay_s,
            )
            await asyncio.sleep(delay_s)


def _stated_batch_limit(error: InvalidArgument) -> int | None:
    """The largest batch the server says it takes, from a refusal of "emojis"."""
    if error.field != "emojis":
        return None
    stated = _BATCH_LIMIT_PATTERN.search(error.message)
    return int(stated.group(1)) if stated and int(stated.group(1)) > 0 else None


def _now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


def _request(tap: Tap, now: dt.datetime) -> emostream_pb2.SendEmojiRequest:
    moment = tap.at or now
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=dt.UTC)
    stamp = timestamp_pb2.Timestamp()
    stamp.FromDatetime(moment)
    return emostream_pb2.SendEmojiRequest(
        match_id=tap.match_id,
        user_id=tap.user_id,
        emoji_type=tap.emoji,
        timestamp=stamp,
    )
