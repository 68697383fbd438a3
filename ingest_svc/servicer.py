"""EmojiIngest: validates viewers' taps and queues them for Kafka."""

from __future__ import annotations

import asyncio
import logging
import time
from typing import NoReturn, Protocol

import grpc

from emostream.v1 import emostream_pb2, emostream_pb2_grpc, internal_pb2
from ingest_svc import metrics
from ingest_svc.errors import (
    BrokerUnavailable,
    IngestError,
    InvalidField,
    QueueFull,
    status_for,
)
from ingest_svc.validation import to_event

log = logging.getLogger(__name__)

# A batch call hands the event loop back this often, so one large batch does
# not hold up every other call.
_YIELD_EVERY = 1_000


class TapSink(Protocol):
    """Where accepted taps go: the Kafka producer, or a recorder in tests."""

    def reserve(self, count: int) -> None: ...

    def produce_nowait(self, key: str, value: bytes) -> None: ...


def _reason(exc: BaseException) -> str:
    """The metrics label of a refusal."""
    if isinstance(exc, InvalidField):
        return exc.field
    if isinstance(exc, QueueFull):
        return "queue_full"
    if isinstance(exc, BrokerUnavailable):
        return "unavailable"
    return "internal"


async def _refuse(
    context: grpc.aio.ServicerContext, exc: BaseException, *, taps: int
) -> NoReturn:
    code, message = status_for(exc)
    metrics.REJECTED.labels(_reason(exc)).inc(taps)
    if code is grpc.StatusCode.INTERNAL:
        log.error("call.failed taps=%d", taps, exc_info=exc)
    await context.abort(code, message)
    raise AssertionError("abort returned")  # abort always raises


class EmojiIngest(emostream_pb2_grpc.EmojiIngestServicer):
    """Answers OK once a tap is queued for Kafka; refuses bad taps by field.

    SendEmojis takes at most ``max_batch`` taps (more: INVALID_ARGUMENT
    naming "emojis"); an empty batch is accepted and answers accepted=0.
    """

    def __init__(self, sink: TapSink, *, max_skew_s: float, max_batch: int) -> None:
        self._sink = sink
        self._max_skew_s = max_skew_s
        self._max_batch = max_batch

    async def SendEmoji(
        self,
        request: emostream_pb2.SendEmojiRequest,
        context: grpc.aio.ServicerContext,
    ) -> emostream_pb2.SendEmojiResponse:
        try:
            event = to_event(request, now_s=time.time(), max_skew_s=self._max_skew_s)
            self._sink.reserve(1)
            self._sink.produce_nowait(event.user_id, event.SerializeToString())
        except Exception as exc:
            await _refuse(context, exc, taps=1)

        metrics.ACCEPTED.inc()
        return emostream_pb2.SendEmojiResponse(emoji_type=event.emoji_type)

    async def SendEmojis(
        self,
        request: emostream_pb2.SendEmojisRequest,
        context: grpc.aio.ServicerContext,
    ) -> emostream_pb2.SendEmojisResponse:
        taps = len(request.emojis)
        if taps > self._max_batch:
            error = InvalidField(
                "emojis", f"at most {self._max_batch} per call, got {taps}"
            )
            await _refuse(context, error, taps=taps)

        events, rejected = await self._validate_batch(request)
        try:
            if events:
                self._sink.reserve(len(events))
        except Exception as exc:
            await _refuse(context, exc, taps=len(events))

        try:
            accepted, unsent = await self._produce_batch(events)
        except Exception as exc:
            await _refuse(context, exc, taps=len(events))

        if not accepted and unsent:
            await _refuse(context, unsent[0][1], taps=len(unsent))
        for index, failure in unsent:
            # The queue filled or failed part-way: these taps were not queued,
            # the ones before them were; the caller resends only these.
            metrics.REJECTED.labels(_reason(failure)).inc()
            rejected.append(
                emostream_pb2.RejectedEmoji(
                    index=index, field="emojis", reason=f"not queued: {failure}"
                )
            )

        metrics.ACCEPTED.inc(accepted)
        log.debug("batch.done accepted=%d rejected=%d", accepted, len(rejected))
        return emostream_pb2.SendEmojisResponse(accepted=accepted, rejected=rejected)

    async def _validate_batch(
        self, request: emostream_pb2.SendEmojisRequest
    ) -> tuple[
        list[tuple[int, internal_pb2.EmojiEvent]], list[emostream_pb2.RejectedEmoji]
    ]:
        now_s = time.time()
        events: list[tuple[int, internal_pb2.EmojiEvent]] = []
        rejected: list[emostream_pb2.RejectedEmoji] = []
        for index, item in enumerate(request.emojis):
            if index and index % _YIELD_EVERY == 0:
                await asyncio.sleep(0)
            try:
                events.append(
                    (index, to_event(item, now_s=now_s, max_skew_s=self._max_skew_s))
                )
            except InvalidField as exc:
                metrics.REJECTED.labels(exc.field).inc()
                rejected.append(
                    emostream_pb2.RejectedEmoji(
                        index=index, field=exc.field, reason=exc.reason
                    )
                )
        return events, rejected

    async def _produce_batch(
        self, events: list[tuple[int, internal_pb2.EmojiEvent]]
    ) -> tuple[int, list[tuple[int, IngestError]]]:
        """Queues ``events``; returns how many were queued and those that were not."""
        for position, (_, event) in enumerate(events):
            if position and position % _YIELD_EVERY == 0:
                await asyncio.sleep(0)
            try:
                self._sink.produce_nowait(event.user_id, event.SerializeToString())
            except IngestError as exc:
                return position, [(index, exc) for index, _ in events[position:]]
        return len(events), []


class NoopIngest(emostream_pb2_grpc.EmojiIngestServicer):
    """Answers OK without validating or producing: the baseline for benchmarks."""

    async def SendEmoji(
        self,
        request: emostream_pb2.SendEmojiRequest,
        context: grpc.aio.ServicerContext,
    ) -> emostream_pb2.SendEmojiResponse:
        return emostream_pb2.SendEmojiResponse(emoji_type=request.emoji_type)

    async def SendEmojis(
        self,
        request: emostream_pb2.SendEmojisRequest,
        context: grpc.aio.ServicerContext,
    ) -> emostream_pb2.SendEmojisResponse:
        return emostream_pb2.SendEmojisResponse(accepted=len(request.emojis))
