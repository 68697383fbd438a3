"""EmojiIngest over a real gRPC server with a recording sink in place of Kafka."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

import grpc
import pytest
from google.protobuf.timestamp_pb2 import Timestamp

from emostream.v1 import emostream_pb2, emostream_pb2_grpc, internal_pb2
from ingest_svc.errors import BrokerUnavailable, IngestError, QueueFull
from ingest_svc.servicer import EmojiIngest, NoopIngest

MAX_BATCH = 50


@dataclass
class RecordingSink:
    """Keeps what would go to Kafka; can be told to fail like the producer."""

    records: list[tuple[str, bytes]] = field(default_factory=list)
    refuse_with: IngestError | None = None
    fail_after: int | None = None
    crash: bool = False

    def reserve(self, count: int) -> None:
        if self.refuse_with is not None:
            raise self.refuse_with

    def produce_nowait(self, key: str, value: bytes) -> None:
        if self.crash:
            raise RuntimeError("secret internals")
        if self.fail_after is not None and len(self.records) >= self.fail_after:
            raise QueueFull("ingest queue is full; retry later")
        self.records.append((key, value))

    def events(self) -> list[internal_pb2.EmojiEvent]:
        return [internal_pb2.EmojiEvent.FromString(v) for _, v in self.records]


@dataclass
class Ingest:
    sink: RecordingSink
    stub: emostream_pb2_grpc.EmojiIngestStub


@pytest.fixture
async def ingest() -> AsyncIterator[Ingest]:
    sink = RecordingSink()
    server = grpc.aio.server()
    emostream_pb2_grpc.add_EmojiIngestServicer_to_server(
        EmojiIngest(sink, max_skew_s=300.0, max_batch=MAX_BATCH), server
    )
    port = server.add_insecure_port("127.0.0.1:0")
    await server.start()
    async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as channel:
        yield Ingest(sink, emostream_pb2_grpc.EmojiIngestStub(channel))
    await server.stop(None)


def _tap(**fields: object) -> emostream_pb2.SendEmojiRequest:
    now = Timestamp()
    now.FromNanoseconds(time.time_ns())
    values: dict[str, Any] = {
        "match_id": "m-1",
        "user_id": "u-1",
        "emoji_type": "🔥",
        "timestamp": now,
    }
    values.update(fields)
    return emostream_pb2.SendEmojiRequest(**values)


async def test_good_tap_is_queued_keyed_by_user_in_canonical_form(
    ingest: Ingest,
) -> None:
    """An accepted tap is queued once, keyed by user_id, with the canonical emoji."""
    reply = await ingest.stub.SendEmoji(_tap(user_id="viewer-7", emoji_type="❤"))

    assert reply.emoji_type == "❤️"
    [(key, _)] = ingest.sink.records
    [event] = ingest.sink.events()
    assert key == "viewer-7"
    assert (event.match_id, event.user_id, event.emoji_type) == (
        "m-1",
        "viewer-7",
        "❤️",
    )


@pytest.mark.parametrize(
    ("fields", "field_name"),
    [
        ({"match_id": ""}, "match_id"),
        ({"user_id": "x" * 65}, "user_id"),
        ({"emoji_type": "🔥🔥"}, "emoji_type"),
        ({"timestamp": Timestamp(seconds=1)}, "timestamp"),
    ],
)
async def test_bad_tap_is_invalid_argument_naming_the_field(
    ingest: Ingest, fields: dict[str, object], field_name: str
) -> None:
    """A bad tap gets INVALID_ARGUMENT naming its field and queues nothing."""
    with pytest.raises(grpc.aio.AioRpcError) as refused:
        await ingest.stub.SendEmoji(_tap(**fields))

    assert refused.value.code() is grpc.StatusCode.INVALID_ARGUMENT
    assert field_name in (refused.value.details() or "")
    assert ingest.sink.records == []


@pytest.mark.parametrize(
    ("error", "code"),
    [
        (BrokerUnavailable("Kafka is unavailable"), grpc.StatusCode.UNAVAILABLE),
        (QueueFull("full"), grpc.StatusCode.RESOURCE_EXHAUSTED),
    ],
)
async def test_sink_refusal_maps_to_its_status(
    ingest: Ingest, error: IngestError, code: grpc.StatusCode
) -> None:
    """Broker down answers UNAVAILABLE; a full queue RESOURCE_EXHAUSTED."""
    ingest.sink.refuse_with = error

    with pytest.raises(grpc.aio.AioRpcError) as refused:
        await ingest.stub.SendEmoji(_tap())
    with pytest.raises(grpc.aio.AioRpcError) as batch_refused:
        await ingest.stub.SendEmojis(emostream_pb2.SendEmojisRequest(emojis=[_tap()]))

    assert refused.value.code() is code
    assert batch_refused.value.code() is code


async def test_unexpected_error_is_internal_without_details(ingest: Ingest) -> None:
    """An unforeseen failure is INTERNAL with a generic message, no internals."""
    ingest.sink.crash = True

    with pytest.raises(grpc.aio.AioRpcError) as refused:
        await ingest.stub.SendEmoji(_tap())

    assert refused.value.code() is grpc.StatusCode.INTERNAL
    assert "secret" not in (refused.value.details() or "")


async def test_batch_refuses_bad_items_one_by_one(ingest: Ingest) -> None:
    """Bad items come back with index and field; the good ones are queued."""
    taps = [
        _tap(user_id="good-0"),
        _tap(emoji_type="ab"),
        _tap(user_id="good-2", emoji_type="👩🏽‍🚒"),
        _tap(match_id="bad match"),
        _tap(user_id="good-4"),
    ]

    reply = await ingest.stub.SendEmojis(emostream_pb2.SendEmojisRequest(emojis=taps))

    assert reply.accepted == 3
    assert [(r.index, r.field) for r in reply.rejected] == [
        (1, "emoji_type"),
        (3, "match_id"),
    ]
    assert [e.user_id for e in ingest.sink.events()] == ["good-0", "good-2", "good-4"]


async def test_batch_over_the_maximum_is_refused_naming_emojis(ingest: Ingest) -> None:
    """More than max_batch taps in one call: INVALID_ARGUMENT on "emojis"."""
    taps = [_tap() for _ in range(MAX_BATCH + 1)]

    with pytest.raises(grpc.aio.AioRpcError) as refused:
        await ingest.stub.SendEmojis(emostream_pb2.SendEmojisRequest(emojis=taps))

    assert refused.value.code() is grpc.StatusCode.INVALID_ARGUMENT
    assert "emojis" in (refused.value.details() or "")
    assert ingest.sink.records == []


async def test_batch_of_exactly_the_maximum_is_accepted(ingest: Ingest) -> None:
    """max_batch taps in one call are all queued."""
    taps = [_tap(user_id=f"u-{i}") for i in range(MAX_BATCH)]

    reply = await ingest.stub.SendEmojis(emostream_pb2.SendEmojisRequest(emojis=taps))

    assert reply.accepted == MAX_BATCH
    assert len(ingest.sink.records) == MAX_BATCH


async def test_empty_batch_is_accepted_with_nothing_queued(ingest: Ingest) -> None:
    """An empty SendEmojis is fine: accepted=0, nothing rejected or queued."""
    reply = await ingest.stub.SendEmojis(emostream_pb2.SendEmojisRequest())

    assert (reply.accepted, list(reply.rejected)) == (0, [])
    assert ingest.sink.records == []


async def test_batch_cut_short_by_a_full_queue_names_the_unsent_items(
    ingest: Ingest,
) -> None:
    """Items after the queue filled come back rejected so only they are resent."""
    ingest.sink.fail_after = 2
    taps = [_tap(user_id=f"u-{i}") for i in range(4)]

    reply = await ingest.stub.SendEmojis(emostream_pb2.SendEmojisRequest(emojis=taps))

    assert reply.accepted == 2
    unsent = [(r.index, r.field) for r in reply.rejected]
    assert unsent == [(2, "emojis"), (3, "emojis")]


async def test_noop_handler_answers_ok_without_validating() -> None:
    """The no-op handler echoes the emoji and counts every batch item accepted."""
    server = grpc.aio.server()
    emostream_pb2_grpc.add_EmojiIngestServicer_to_server(NoopIngest(), server)
    port = server.add_insecure_port("127.0.0.1:0")
    await server.start()
    try:
        async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as channel:
            stub = emostream_pb2_grpc.EmojiIngestStub(channel)
            reply = await stub.SendEmoji(_tap(emoji_type="not checked"))
            batch = await stub.SendEmojis(
                emostream_pb2.SendEmojisRequest(emojis=[_tap(), _tap(match_id="")])
            )
    finally:
        await server.stop(None)

    assert reply.emoji_type == "not checked"
    assert batch.accepted == 2
