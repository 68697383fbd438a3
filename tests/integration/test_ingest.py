"""Ingest against the real mesh: taps reach Kafka, bad ones never do, and OK
means delivered, through SIGTERM and a broker outage."""

from __future__ import annotations

import asyncio
import json
import subprocess
import time
from collections.abc import Callable
from typing import Any

import grpc
import pytest
from google.protobuf.timestamp_pb2 import Timestamp

from deploy.layout import CACHE, EMOJI_TOPIC
from deploy.mesh import Mesh
from emostream.v1 import emostream_pb2, emostream_pb2_grpc, internal_pb2
from tests.integration.conftest import read_topic, wait_for

pytestmark = pytest.mark.integration

GRPCURL = str(CACHE / "bin" / "grpcurl")
MAX_BATCH = 10_000


def _now(offset_s: float = 0.0) -> Timestamp:
    stamp = Timestamp()
    stamp.FromNanoseconds(time.time_ns() + int(offset_s * 1e9))
    return stamp


def _tap(
    match_id: str, user_id: str, emoji: str = "🔥", *, skew_s: float | None = 0.0
) -> Any:
    """A tap stamped ``skew_s`` from now; ``skew_s=None`` leaves the time out."""
    request = emostream_pb2.SendEmojiRequest(
        match_id=match_id, user_id=user_id, emoji_type=emoji
    )
    if skew_s is not None:
        request.timestamp.CopyFrom(_now(skew_s))
    return request


def _of_match(match_id: str) -> Callable[[bytes], bool]:
    def keep(value: bytes) -> bool:
        return internal_pb2.EmojiEvent.FromString(value).match_id == match_id

    return keep


def _events(
    mesh: Mesh, keep: Callable[[bytes], bool], expected: int, timeout_s: float = 30.0
) -> list[internal_pb2.EmojiEvent]:
    values = read_topic(
        mesh.layout.kafka_bootstrap,
        EMOJI_TOPIC,
        keep=keep,
        expected=expected,
        timeout_s=timeout_s,
    )
    return [internal_pb2.EmojiEvent.FromString(v) for v in values]


def _direct(mesh: Mesh) -> str:
    return f"127.0.0.1:{mesh.layout.ingest_port(0)}"


def _grpcurl(*args: str) -> str:
    done = subprocess.run(
        [GRPCURL, "-plaintext", "-max-time", "10", *args],
        capture_output=True,
        text=True,
        timeout=20,
        check=False,
    )
    assert done.returncode == 0, f"grpcurl {args} failed: {done.stderr}"
    return done.stdout


def test_tap_through_envoy_reaches_kafka_field_for_field(
    mesh: Mesh, match_id: str
) -> None:
    """A tap sent through Envoy is read back from the topic with every field."""
    tap = _tap(match_id, "viewer-1", "❤")

    with grpc.insecure_channel(mesh.layout.envoy_address) as channel:
        reply = emostream_pb2_grpc.EmojiIngestStub(channel).SendEmoji(tap, timeout=10)
    [event] = _events(mesh, _of_match(match_id), expected=1)

    assert reply.emoji_type == "❤️"
    assert event.match_id == match_id
    assert event.user_id == "viewer-1"
    assert event.emoji_type == "❤️"
    assert event.tapped_at == tap.timestamp
    assert event.HasField("received_at")


def test_grpcurl_lists_describes_and_calls_through_envoy(
    mesh: Mesh, match_id: str
) -> None:
    """Reflection through Envoy shows the public services; grpcurl can call them."""
    envoy = mesh.layout.envoy_address
    tap = {
        "match_id": match_id,
        "user_id": "grpcurl-1",
        "emoji_type": "👍🏿",
        "timestamp": _now().ToJsonString(),
    }

    services = _grpcurl(envoy, "list").split()
    described = _grpcurl(envoy, "describe", "emostream.v1.EmojiIngest")
    method = _grpcurl(envoy, "describe", "emostream.v1.EmojiIngest.SendEmoji")
    one = _grpcurl("-d", json.dumps(tap), envoy, "emostream.v1.EmojiIngest/SendEmoji")
    many = _grpcurl(
        "-d",
        json.dumps({"emojis": [{**tap, "user_id": "grpcurl-2"}]}),
        envoy,
        "emostream.v1.EmojiIngest/SendEmojis",
    )

    assert {"emostream.v1.EmojiIngest", "emostream.v1.SwarmFeed"} <= set(services)
    assert "SendEmojis" in described
    assert "SendEmojiRequest" in method
    assert json.loads(one) == {"emoji_type": "👍🏿"}
    assert json.loads(many) == {"accepted": 1}
    assert len(_events(mesh, _of_match(match_id), expected=2)) == 2


def test_batch_of_ten_thousand_arrives_complete(mesh: Mesh, match_id: str) -> None:
    """10,000 taps in one SendEmojis are in Kafka exactly once each."""
    taps = [_tap(match_id, f"viewer-{i}") for i in range(MAX_BATCH)]

    with grpc.insecure_channel(mesh.layout.envoy_address) as channel:
        reply = emostream_pb2_grpc.EmojiIngestStub(channel).SendEmojis(
            emostream_pb2.SendEmojisRequest(emojis=taps), timeout=10
        )
    events = _events(mesh, _of_match(match_id), expected=MAX_BATCH, timeout_s=60)

    assert (reply.accepted, list(reply.rejected)) == (MAX_BATCH, [])
    assert len(events) == MAX_BATCH
    assert {e.user_id for e in events} == {f"viewer-{i}" for i in range(MAX_BATCH)}


def test_every_bad_input_is_refused_and_writes_nothing(
    mesh: Mesh, match_id: str
) -> None:
    """Each bad tap gets INVALID_ARGUMENT naming its field and no record."""
    bad = [
        ("match_id", _tap("", f"{match_id}-u")),
        ("match_id", _tap(f"{match_id} x", f"{match_id}-u")),
        ("user_id", _tap(match_id, "")),
        ("user_id", _tap(match_id, "u" * 65)),
        ("emoji_type", _tap(match_id, "u1", "ab")),
        ("emoji_type", _tap(match_id, "u2", "🔥🔥")),
        ("emoji_type", _tap(match_id, "u3", " 🔥")),
        ("emoji_type", _tap(match_id, "u4", "🏿")),
        ("emoji_type", _tap(match_id, "u5", "")),
        ("timestamp", _tap(match_id, "u6", skew_s=None)),
        ("timestamp", _tap(match_id, "u7", skew_s=-3600)),
        ("timestamp", _tap(match_id, "u8", skew_s=3600)),
    ]

    with grpc.insecure_channel(mesh.layout.envoy_address) as channel:
        stub = emostream_pb2_grpc.EmojiIngestStub(channel)
        for field, request in bad:
            with pytest.raises(grpc.RpcError) as refused:
                stub.SendEmoji(request, timeout=10)
            assert refused.value.code() is grpc.StatusCode.INVALID_ARGUMENT, field
            assert field in (refused.value.details() or ""), field
        batch = stub.SendEmojis(
            emostream_pb2.SendEmojisRequest(emojis=[r for _, r in bad]), timeout=10
        )
        with pytest.raises(grpc.RpcError) as too_big:
            stub.SendEmojis(
                emostream_pb2.SendEmojisRequest(
                    emojis=[_tap(match_id, "big")] * (MAX_BATCH + 1)
                ),
                timeout=10,
            )
        stub.SendEmoji(_tap(match_id, "sentinel"), timeout=10)

    def ours(value: bytes) -> bool:
        event = internal_pb2.EmojiEvent.FromString(value)
        return match_id in event.match_id or match_id in event.user_id

    events = _events(mesh, ours, expected=1)
    assert batch.accepted == 0
    assert [(r.index, r.field) for r in batch.rejected] == [
        (i, field) for i, (field, _) in enumerate(bad)
    ]
    assert too_big.value.code() is grpc.StatusCode.INVALID_ARGUMENT
    assert "emojis" in (too_big.value.details() or "")
    assert [e.user_id for e in events] == ["sentinel"]


async def _send_until(
    address: str,
    match_id: str,
    worker: int,
    stop: asyncio.Event,
    acknowledged: set[str],
    *,
    max_calls: int,
) -> None:
    """Sends taps one after another; records the user ids that got OK."""
    async with grpc.aio.insecure_channel(address) as channel:
        stub = emostream_pb2_grpc.EmojiIngestStub(channel)
        for n in range(max_calls):
            if stop.is_set():
                return
            user_id = f"w{worker}-{n}"
            try:
                await stub.SendEmoji(_tap(match_id, user_id), timeout=5)
            except grpc.aio.AioRpcError:
                await asyncio.sleep(0.05)
                continue
            acknowledged.add(user_id)


async def test_sigterm_under_load_loses_no_acknowledged_tap(
    mesh: Mesh, match_id: str
) -> None:
    """Every tap that got OK before and during SIGTERM is in Kafka afterwards."""
    acknowledged: set[str] = set()
    stop = asyncio.Event()
    senders = [
        asyncio.create_task(
            _send_until(
                _direct(mesh), match_id, w, stop, acknowledged, max_calls=20_000
            )
        )
        for w in range(16)
    ]
    try:
        deadline = time.monotonic() + 30
        while len(acknowledged) < 2_000:
            assert time.monotonic() < deadline, "load never reached 2,000 OKs"
            await asyncio.sleep(0.05)
        await asyncio.to_thread(mesh.stop, "ingest-0")
        stopped_at = len(acknowledged)
    finally:
        stop.set()
        await asyncio.gather(*senders)
        await asyncio.to_thread(mesh.start, "ingest-0")

    events = await asyncio.to_thread(
        _events, mesh, _of_match(match_id), len(acknowledged), 60.0
    )
    delivered = {e.user_id for e in events}
    assert stopped_at >= 2_000
    assert acknowledged <= delivered, f"lost {len(acknowledged - delivered)} taps"
    assert len(events) == len(delivered), "a tap was written twice"


def test_broker_down_fails_fast_then_recovers(mesh: Mesh, match_id: str) -> None:
    """Without Kafka calls get UNAVAILABLE at once; with it back, OK again."""
    acknowledged: list[str] = []

    def send(stub: emostream_pb2_grpc.EmojiIngestStub, user_id: str) -> bool:
        try:
            stub.SendEmoji(_tap(match_id, user_id), timeout=5)
        except grpc.RpcError as exc:
            assert exc.code() is grpc.StatusCode.UNAVAILABLE, exc
            return False
        acknowledged.append(user_id)
        return True

    with grpc.insecure_channel(_direct(mesh)) as channel:
        stub = emostream_pb2_grpc.EmojiIngestStub(channel)
        assert send(stub, "before")
        try:
            mesh.stop("kafka")
            n = iter(range(1_000))
            wait_for(
                lambda: not send(stub, f"down-{next(n)}"),
                timeout_s=15,
                what="UNAVAILABLE while Kafka is stopped",
            )
            refused = [send(stub, f"refused-{i}") for i in range(5)]
        finally:
            mesh.start("kafka")
        m = iter(range(1_000))
        wait_for(
            lambda: send(stub, f"after-{next(m)}"),
            timeout_s=30,
            what="ingest to accept again after Kafka restarted",
        )

    events = _events(mesh, _of_match(match_id), len(acknowledged), timeout_s=60)
    assert refused == [False] * 5
    assert set(acknowledged) <= {e.user_id for e in events}
