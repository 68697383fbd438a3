"""Client.send and send_many against a real local EmojiIngest server."""

from __future__ import annotations

from collections.abc import AsyncIterator

import emoji as emoji_data
import grpc
import pytest

import emostream
from emostream import (
    Backoff,
    Client,
    DeadlineExceeded,
    InvalidArgument,
    InvalidEmoji,
    MessageTooLarge,
    Overloaded,
    ServerError,
    Tap,
    Unavailable,
)
from emostream.v1 import emostream_pb2, emostream_pb2_grpc

FAST = Backoff(initial_s=0.001, max_s=0.005)


class FakeIngest(emostream_pb2_grpc.EmojiIngestServicer):
    """Judges taps the way the real service words it; fails on demand.

    ``failures`` are (code, message) pairs played, one per call, before the
    call is served normally.
    """

    def __init__(self, *, max_batch: int = 10_000) -> None:
        self.failures: list[tuple[grpc.StatusCode, str]] = []
        self.calls = 0
        self.batch_sizes: list[int] = []
        self.max_batch = max_batch
        self.taps: list[emostream_pb2.SendEmojiRequest] = []

    async def _maybe_fail(self, context: grpc.aio.ServicerContext) -> None:
        self.calls += 1
        if self.failures:
            code, message = self.failures.pop(0)
            await context.abort(code, message)

    async def SendEmoji(self, request, context):  # type: ignore[no-untyped-def]
        await self._maybe_fail(context)
        problem = judge(request)
        if problem is not None:
            await context.abort(grpc.StatusCode.INVALID_ARGUMENT, ": ".join(problem))
        self.taps.append(request)
        return emostream_pb2.SendEmojiResponse(emoji_type=canonical(request.emoji_type))

    async def SendEmojis(self, request, context):  # type: ignore[no-untyped-def]
        await self._maybe_fail(context)
        if len(request.emojis) > self.max_batch:
            await context.abort(
                grpc.StatusCode.INVALID_ARGUMENT,
                f"emojis: at most {self.max_batch} per call, got {len(request.emojis)}",
            )
        self.batch_sizes.append(len(request.emojis))
        reply = emostream_pb2.SendEmojisResponse()
        for index, item in enumerate(request.emojis):
            problem = judge(item)
            if problem is None:
                reply.accepted += 1
                self.taps.append(item)
            else:
                reply.rejected.add(index=index, field=problem[0], reason=problem[1])
        return reply


def judge(request: emostream_pb2.SendEmojiRequest) -> tuple[str, str] | None:
    if not request.match_id:
        return ("match_id", "is required")
    if not request.user_id:
        return ("user_id", "is required")
    if not emoji_data.is_emoji(request.emoji_type):
        return ("emoji_type", "must be exactly one emoji")
    return None


def canonical(text: str) -> str:
    return "❤️" if text == "❤" else text


@pytest.fixture
async def ingest() -> AsyncIterator[tuple[FakeIngest, str]]:
    server = grpc.aio.server()
    port = server.add_insecure_port("127.0.0.1:0")
    fake = FakeIngest(max_batch=50)
    emostream_pb2_grpc.add_EmojiIngestServicer_to_server(fake, server)
    await server.start()
    try:
        yield fake, f"127.0.0.1:{port}"
    finally:
        await server.stop(0)


def test_public_names_are_exactly_the_documented_ones() -> None:
    """The package exports the SDK's names and nothing else by accident."""
    assert sorted(emostream.__all__) == sorted(
        [
            "MAX_BATCH",
            "Backoff",
            "BatchResult",
            "Client",
            "DeadlineExceeded",
            "EmoStreamError",
            "InvalidArgument",
            "InvalidEmoji",
            "MessageTooLarge",
            "Notice",
            "Overloaded",
            "Rejection",
            "ServerError",
            "Swarm",
            "Tap",
            "Unavailable",
            "translate_error",
        ]
    )
    for name in emostream.__all__:
        assert hasattr(emostream, name), name


async def test_send_returns_the_canonical_emoji(
    ingest: tuple[FakeIngest, str], match_id: str
) -> None:
    """send answers with the emoji as the server counts it, stamped with a time."""
    fake, address = ingest
    async with Client(address) as client:
        assert await client.send(match_id, "u1", "❤") == "❤️"

    assert fake.taps[0].match_id == match_id
    assert fake.taps[0].timestamp.seconds > 0


async def test_invalid_emoji_raises_invalid_emoji_naming_the_field(
    ingest: tuple[FakeIngest, str], match_id: str
) -> None:
    """A refused emoji raises InvalidEmoji, an InvalidArgument with field emoji_type."""
    _, address = ingest
    async with Client(address) as client:
        with pytest.raises(InvalidEmoji) as raised:
            await client.send(match_id, "u1", "not-an-emoji")

    assert isinstance(raised.value, InvalidArgument)
    assert raised.value.field == "emoji_type"
    assert raised.value.reason == "must be exactly one emoji"
    assert raised.value.code == grpc.StatusCode.INVALID_ARGUMENT


async def test_other_invalid_field_is_named(
    ingest: tuple[FakeIngest, str], match_id: str
) -> None:
    """A refused user id raises InvalidArgument with field user_id, not InvalidEmoji."""
    _, address = ingest
    async with Client(address) as client:
        with pytest.raises(InvalidArgument) as raised:
            await client.send(match_id, "", "🔥")

    assert not isinstance(raised.value, InvalidEmoji)
    assert raised.value.field == "user_id"


async def test_unavailable_is_retried_then_succeeds(
    ingest: tuple[FakeIngest, str], match_id: str
) -> None:
    """Two UNAVAILABLE answers are retried and the third attempt is accepted."""
    fake, address = ingest
    fake.failures = [(grpc.StatusCode.UNAVAILABLE, "busy")] * 2
    async with Client(address, retries=3, retry_backoff=FAST) as client:
        assert await client.send(match_id, "u1", "🔥") == "🔥"

    assert fake.calls == 3
    assert len(fake.taps) == 1


@pytest.mark.parametrize(
    ("code", "expected"),
    [
        (grpc.StatusCode.UNAVAILABLE, Unavailable),
        (grpc.StatusCode.RESOURCE_EXHAUSTED, Overloaded),
        (grpc.StatusCode.DEADLINE_EXCEEDED, DeadlineExceeded),
        (grpc.StatusCode.INTERNAL, ServerError),
    ],
)
async def test_status_codes_become_typed_errors(
    ingest: tuple[FakeIngest, str],
    match_id: str,
    code: grpc.StatusCode,
    expected: type[Exception],
) -> None:
    """Each gRPC status maps to its error class; retries stop at the bound."""
    fake, address = ingest
    fake.failures = [(code, "scripted")] * 5
    async with Client(address, retries=2, retry_backoff=FAST) as client:
        with pytest.raises(expected):
            await client.send(match_id, "u1", "🔥")

    retried = expected in (Unavailable, Overloaded)
    assert fake.calls == (3 if retried else 1)


async def test_message_over_the_size_limit_is_not_retried(
    ingest: tuple[FakeIngest, str], match_id: str
) -> None:
    """RESOURCE_EXHAUSTED for a too-large message raises at once: resending
    the same bytes cannot succeed."""
    fake, address = ingest
    too_large = "Received message larger than max (4200028 vs. 4194304)"
    fake.failures = [(grpc.StatusCode.RESOURCE_EXHAUSTED, too_large)] * 5
    async with Client(address, retries=2, retry_backoff=FAST) as client:
        with pytest.raises(MessageTooLarge):
            await client.send(match_id, "u1", "🔥")

    assert fake.calls == 1


async def test_send_many_splits_and_reports_rejections_by_input_index(
    ingest: tuple[FakeIngest, str], match_id: str
) -> None:
    """120 taps go out in calls of at most max_batch; refusals keep their index."""
    fake, address = ingest
    taps = [Tap(match_id, f"u{i}", "🔥") for i in range(120)]
    taps[7] = Tap(match_id, "u7", "xx")
    taps[95] = Tap(match_id, "", "👏")

    async with Client(address, max_batch=40) as client:
        result = await client.send_many(taps)

    assert fake.batch_sizes == [40, 40, 40]
    assert result.accepted == 118
    assert [(r.index, r.field) for r in result.rejected] == [
        (7, "emoji_type"),
        (95, "user_id"),
    ]
    assert result.refused_by_field() == {"emoji_type": 1, "user_id": 1}


async def test_send_many_lowers_its_batch_to_the_servers_stated_limit(
    ingest: tuple[FakeIngest, str], match_id: str
) -> None:
    """A call refused as too large is sent again in calls of the stated size."""
    fake, address = ingest
    taps = [(match_id, f"u{i}", "👏") for i in range(120)]

    async with Client(address, max_batch=100) as client:
        result = await client.send_many(taps)
        assert client.max_batch == 50

    assert result.accepted == 120
    assert result.sent == 120
    assert fake.batch_sizes == [50, 50, 20]
