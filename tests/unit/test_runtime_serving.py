"""The shared gRPC server: a body that does not decode is INVALID_ARGUMENT."""

from __future__ import annotations

from collections.abc import AsyncIterator

import grpc
import pytest

from emostream.runtime import new_server
from emostream.v1 import emostream_pb2, emostream_pb2_grpc
from ingest_svc.servicer import NoopIngest

# A string field (match_id, tag 1) holding bytes that are not UTF-8.
BAD_UTF8 = b"\x0a\x02\xff\xfe"


class OneSwarmFeed(emostream_pb2_grpc.SwarmFeedServicer):
    async def Subscribe(
        self, request: emostream_pb2.SubscribeRequest, context: grpc.aio.ServicerContext
    ) -> AsyncIterator[emostream_pb2.Swarm]:
        yield emostream_pb2.Swarm(match_id=request.match_id, seq=1)


@pytest.fixture
async def address() -> AsyncIterator[str]:
    server = new_server()
    emostream_pb2_grpc.add_EmojiIngestServicer_to_server(NoopIngest(), server)
    emostream_pb2_grpc.add_SwarmFeedServicer_to_server(OneSwarmFeed(), server)
    port = server.add_insecure_port("127.0.0.1:0")
    await server.start()
    yield f"127.0.0.1:{port}"
    await server.stop(None)


async def test_undecodable_unary_request_is_invalid_argument(address: str) -> None:
    """Bad UTF-8 in a string field is refused naming the request, not UNKNOWN."""
    async with grpc.aio.insecure_channel(address) as channel:
        call = channel.unary_unary("/emostream.v1.EmojiIngest/SendEmoji")
        with pytest.raises(grpc.aio.AioRpcError) as raised:
            await call(BAD_UTF8, timeout=5)
    assert raised.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "request" in (raised.value.details() or "")


async def test_undecodable_stream_request_is_invalid_argument(address: str) -> None:
    """The same holds for a server-streaming method."""
    async with grpc.aio.insecure_channel(address) as channel:
        call = channel.unary_stream("/emostream.v1.SwarmFeed/Subscribe")
        with pytest.raises(grpc.aio.AioRpcError) as raised:
            async for _ in call(BAD_UTF8, timeout=5):
                pass
    assert raised.value.code() == grpc.StatusCode.INVALID_ARGUMENT


async def test_good_requests_still_reach_the_handlers(address: str) -> None:
    """Decoding in the interceptor changes nothing for valid requests."""
    async with grpc.aio.insecure_channel(address) as channel:
        ingest = emostream_pb2_grpc.EmojiIngestStub(channel)
        reply = await ingest.SendEmoji(
            emostream_pb2.SendEmojiRequest(match_id="m", emoji_type="🔥"), timeout=5
        )
        feed = emostream_pb2_grpc.SwarmFeedStub(channel)
        swarms = [
            s
            async for s in feed.Subscribe(
                emostream_pb2.SubscribeRequest(match_id="m"), timeout=5
            )
        ]
    assert reply.emoji_type == "🔥"
    assert [s.seq for s in swarms] == [1]
