"""Envoy in front of the real mesh: REST, gRPC-Web, CORS, reflection and load."""

from __future__ import annotations

import datetime
import http.client
import json
import struct
import subprocess
import urllib.request
from typing import Any

import grpc
import pytest

from deploy import envoy_config
from deploy.envoy_config import DESCRIPTOR_SET
from deploy.layout import CACHE, EMOJI_TOPIC
from deploy.mesh import Mesh
from emostream.v1 import emostream_pb2, emostream_pb2_grpc, internal_pb2
from tests.integration.conftest import read_topic

pytestmark = pytest.mark.integration

GHZ = CACHE / "bin" / "ghz"
GRPCURL = CACHE / "bin" / "grpcurl"
ALLOWED_ORIGIN = "http://localhost:3000"


# Helpers -------------------------------------------------------------------------


def _now_rfc3339() -> str:
    return datetime.datetime.now(datetime.UTC).isoformat().replace("+00:00", "Z")


def _request(
    mesh: Mesh,
    method: str,
    path: str,
    body: bytes | None = None,
    headers: dict[str, str] | None = None,
) -> tuple[int, dict[str, str], bytes]:
    """One HTTP/1.1 request to Envoy's public listener."""
    connection = http.client.HTTPConnection(
        "127.0.0.1", mesh.layout.envoy_port, timeout=10
    )
    try:
        connection.request(method, path, body=body, headers=headers or {})
        reply = connection.getresponse()
        return (
            reply.status,
            {k.lower(): v for k, v in reply.getheaders()},
            reply.read(),
        )
    finally:
        connection.close()


def _post_json(
    mesh: Mesh, path: str, payload: Any, headers: dict[str, str] | None = None
) -> tuple[int, dict[str, str], bytes]:
    return _request(
        mesh,
        "POST",
        path,
        json.dumps(payload).encode(),
        {"content-type": "application/json", **(headers or {})},
    )


def _upstream_requests(mesh: Mesh) -> dict[str, int]:
    """Requests Envoy has sent to each cluster (health checks not included)."""
    admin = f"http://127.0.0.1:{mesh.layout.envoy_admin_port}"
    with urllib.request.urlopen(f"{admin}/stats?format=json", timeout=5) as reply:
        stats = json.loads(reply.read())["stats"]
    suffix = ".upstream_rq_total"
    return {
        stat["name"].removeprefix("cluster.").removesuffix(suffix): stat["value"]
        for stat in stats
        if stat.get("name", "").startswith("cluster.") and stat["name"].endswith(suffix)
    }


def _events_of(
    mesh: Mesh, match_id: str, expected: int
) -> list[internal_pb2.EmojiEvent]:
    def keep(value: bytes) -> bool:
        try:
            return internal_pb2.EmojiEvent.FromString(value).match_id == match_id
        except Exception:
            return False

    values = read_topic(
        mesh.layout.kafka_bootstrap, EMOJI_TOPIC, keep=keep, expected=expected
    )
    return [internal_pb2.EmojiEvent.FromString(v) for v in values]


def _grpc_web_frame(message: bytes) -> bytes:
    return b"\x00" + struct.pack(">I", len(message)) + message


def _grpc_web_send(
    mesh: Mesh, request: emostream_pb2.SendEmojiRequest, *, origin: str | None = None
) -> tuple[int, dict[str, str], bytes]:
    """SendEmoji as a browser's gRPC-Web client sends it, through Envoy."""
    headers = {"content-type": "application/grpc-web+proto", "x-grpc-web": "1"}
    if origin is not None:
        headers["origin"] = origin
    return _request(
        mesh,
        "POST",
        "/emostream.v1.EmojiIngest/SendEmoji",
        _grpc_web_frame(request.SerializeToString()),
        headers,
    )


def _grpc_web_frames(body: bytes) -> tuple[list[bytes], dict[str, str]]:
    """Splits a gRPC-Web response body into its messages and its trailers."""
    messages, trailers = [], {}
    while body:
        flags, length = body[0], struct.unpack(">I", body[1:5])[0]
        payload, body = body[5 : 5 + length], body[5 + length :]
        if flags & 0x80:
            for line in payload.decode().split("\r\n"):
                if line:
                    key, _, value = line.partition(":")
                    trailers[key.strip().lower()] = value.strip()
        else:
            messages.append(payload)
    return messages, trailers


def _json_status(headers: dict[str, str], body: bytes) -> dict[str, Any]:
    """The JSON google.rpc.Status of an error reply, checked for its shape."""
    assert headers["content-type"].startswith("application/json"), (headers, body)
    error: dict[str, Any] = json.loads(body)
    assert set(error) == {"code", "message", "details"}, error
    assert error["message"], error
    return error


# REST ----------------------------------------------------------------------------


def test_rest_send_emoji_is_accepted_and_written_to_kafka(
    mesh: Mesh, match_id: str
) -> None:
    """A REST tap gets 200 JSON with proto field names, and its event reaches Kafka."""
    tapped_at = _now_rfc3339()

    status, headers, body = _post_json(
        mesh,
        f"/v1/matches/{match_id}/emojis",
        {"user_id": "viewer-1", "emoji_type": "🔥", "timestamp": tapped_at},
    )

    assert status == 200, body
    assert headers["content-type"].startswith("application/json")
    assert json.loads(body) == {"emoji_type": "🔥"}
    (event,) = _events_of(mesh, match_id, expected=1)
    assert (event.match_id, event.user_id, event.emoji_type) == (
        match_id,
        "viewer-1",
        "🔥",
    )
    assert event.tapped_at.ToJsonString().startswith(tapped_at[:19])


def test_rest_batch_accepts_good_items_and_names_the_bad_field(
    mesh: Mesh, match_id: str
) -> None:
    """The batch route takes lowerCamel or proto names and refuses bad items singly."""
    now = _now_rfc3339()
    items = [
        {"match_id": match_id, "user_id": "viewer-1", "emoji_type": "🎉"},
        {"match_id": match_id, "user_id": "viewer-2", "emoji_type": "nope"},
        {"matchId": match_id, "userId": "viewer-3", "emojiType": "👏"},
    ]
    for item in items:
        item["timestamp"] = now

    status, _, body = _post_json(mesh, "/v1/emojis:batch", {"emojis": items})

    assert status == 200, body
    reply = json.loads(body)
    assert reply["accepted"] == 2
    assert [(r["index"], r["field"]) for r in reply["rejected"]] == [(1, "emoji_type")]
    events = _events_of(mesh, match_id, expected=2)
    assert sorted(e.user_id for e in events) == ["viewer-1", "viewer-3"]


def test_rest_bad_field_gets_400_json_naming_the_field(
    mesh: Mesh, match_id: str
) -> None:
    """An invalid emoji comes back as HTTP 400 with a JSON status naming emoji_type."""
    status, headers, body = _post_json(
        mesh,
        f"/v1/matches/{match_id}/emojis",
        {
            "user_id": "viewer-1",
            "emoji_type": "not an emoji",
            "timestamp": _now_rfc3339(),
        },
    )

    assert status == 400, body
    assert headers["content-type"].startswith("application/json")
    error = json.loads(body)
    assert error["code"] == 3  # INVALID_ARGUMENT
    assert "emoji_type" in error["message"]


def test_rest_malformed_json_gets_400_json(mesh: Mesh, match_id: str) -> None:
    """A body that is not JSON gets a 400 JSON status from Envoy and writes nothing."""
    status, headers, body = _request(
        mesh,
        "POST",
        f"/v1/matches/{match_id}/emojis",
        b'{"user_id": "viewer-1", "emoji_type": ',
        {"content-type": "application/json"},
    )

    # The transcoder opens the upstream call with the headers and resets it
    # when the body fails to parse, so the backend sees a cancelled call with
    # no message; only the reply and the absence of an event can be checked.
    assert status == 400, body
    error = _json_status(headers, body)
    assert error["code"] == 3  # INVALID_ARGUMENT
    assert error["details"] == []
    assert _events_of(mesh, match_id, expected=0) == []


@pytest.mark.parametrize(
    ("case", "body", "expected"),
    [
        ("wrong type", b'{"user_id": 5}', "user_id"),
        ("bad timestamp", b'{"user_id": "v", "timestamp": "yesterday"}', "timestamp"),
        ("invalid UTF-8", b'{"user_id": "\xff\xfe"}', "UTF-8"),
        ("lone surrogate", b'{"user_id": "\\ud83d"}', "surrogate"),
    ],
)
def test_rest_body_the_transcoder_refuses_gets_400_json(
    mesh: Mesh, match_id: str, case: str, body: bytes, expected: str
) -> None:
    """A JSON body that does not fit the message gets a 400 JSON status naming why."""
    status, headers, reply = _request(
        mesh,
        "POST",
        f"/v1/matches/{match_id}/emojis",
        body,
        {"content-type": "application/json"},
    )

    assert status == 400, (case, reply)
    error = _json_status(headers, reply)
    assert error["code"] == 3, case  # INVALID_ARGUMENT
    assert expected in error["message"], case


def test_rest_unknown_query_parameter_gets_400_json(mesh: Mesh, match_id: str) -> None:
    """A query parameter the message lacks gets a 400 JSON status naming it."""
    before = _upstream_requests(mesh)

    status, headers, body = _post_json(
        mesh,
        f"/v1/matches/{match_id}/emojis?foo=1",
        {"user_id": "viewer-1", "emoji_type": "🔥", "timestamp": _now_rfc3339()},
    )

    assert status == 400, body
    error = _json_status(headers, body)
    assert error["code"] == 3  # INVALID_ARGUMENT
    assert '"foo"' in error["message"]
    assert _upstream_requests(mesh) == before


def test_rest_json_to_a_grpc_path_gets_404_json(mesh: Mesh) -> None:
    """JSON posted to a gRPC method's path gets a 404 JSON status, not plain text."""
    status, headers, body = _post_json(mesh, "/emostream.v1.EmojiIngest/SendEmoji", {})

    assert status == 404, body
    error = _json_status(headers, body)
    assert error["code"] == 5  # NOT_FOUND
    assert "SendEmoji" in error["message"]


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("GET", "/"),
        ("POST", "/v1/matches"),
        ("GET", "/v1/matches/some-match/emojis"),
        ("POST", "/admin/clusters"),
    ],
)
def test_unknown_path_gets_json_404_and_is_not_forwarded(
    mesh: Mesh, method: str, path: str
) -> None:
    """Paths and verbs the API does not define are answered 404 by Envoy itself."""
    before = _upstream_requests(mesh)

    status, headers, body = _request(
        mesh, method, path, b"{}", {"content-type": "application/json"}
    )

    assert status == 404, body
    assert headers["content-type"] == "application/json"
    # One JSON status, the message plain text inside it, not a nested JSON.
    error = _json_status(headers, body)
    assert error["code"] == 5
    assert not error["message"].startswith("{"), error
    assert "x-envoy-upstream-service-time" not in headers
    assert _upstream_requests(mesh) == before


def test_noop_header_reaches_the_noop_ingest_only(mesh: Mesh, match_id: str) -> None:
    """With x-emostream-backend: noop, the tap goes to the no-op ingest cluster."""
    if not mesh.layout.noop_ingest:
        pytest.skip("this mesh runs without the no-op ingest")
    before = _upstream_requests(mesh)

    status, _, body = _post_json(
        mesh,
        f"/v1/matches/{match_id}/emojis",
        {"user_id": "viewer-1", "emoji_type": "🔥", "timestamp": _now_rfc3339()},
        headers={"x-emostream-backend": "noop"},
    )

    assert status == 200, body
    after = _upstream_requests(mesh)
    assert after["ingest_noop"] == before["ingest_noop"] + 1
    assert after["ingest"] == before["ingest"]


# gRPC-Web and CORS -----------------------------------------------------------------


def test_grpc_web_send_emoji_succeeds(mesh: Mesh, match_id: str) -> None:
    """A hand-built gRPC-Web call gets the canonical emoji and grpc-status 0."""
    request = emostream_pb2.SendEmojiRequest(
        match_id=match_id, user_id="viewer-1", emoji_type="👏"
    )
    request.timestamp.GetCurrentTime()

    status, headers, body = _grpc_web_send(mesh, request, origin=ALLOWED_ORIGIN)

    assert status == 200, body
    assert headers["content-type"] == "application/grpc-web+proto"
    assert headers["access-control-allow-origin"] == ALLOWED_ORIGIN
    messages, trailers = _grpc_web_frames(body)
    assert trailers.get("grpc-status") == "0", trailers
    (reply,) = [emostream_pb2.SendEmojiResponse.FromString(m) for m in messages]
    assert reply.emoji_type == "👏"


def test_grpc_web_bad_input_gets_invalid_argument_in_trailers(
    mesh: Mesh, match_id: str
) -> None:
    """A gRPC-Web caller's bad field still comes back as grpc-status 3, not JSON."""
    request = emostream_pb2.SendEmojiRequest(
        match_id=match_id, user_id="viewer-1", emoji_type="not an emoji"
    )
    request.timestamp.GetCurrentTime()

    status, headers, body = _grpc_web_send(mesh, request)

    assert status == 200, body
    assert headers["content-type"].startswith("application/grpc-web"), headers
    messages, trailers = _grpc_web_frames(body)
    assert messages == []
    # An error without messages may come trailers-only, i.e. in the headers.
    status_fields = {**headers, **trailers}
    assert status_fields.get("grpc-status") == "3", status_fields
    assert "emoji_type" in status_fields.get("grpc-message", ""), status_fields


def _preflight(mesh: Mesh, origin: str) -> tuple[int, dict[str, str], bytes]:
    return _request(
        mesh,
        "OPTIONS",
        "/emostream.v1.EmojiIngest/SendEmoji",
        None,
        {
            "origin": origin,
            "access-control-request-method": "POST",
            "access-control-request-headers": "content-type,x-grpc-web",
        },
    )


def test_cors_preflight_from_allowed_origin_is_answered_by_envoy(mesh: Mesh) -> None:
    """An allowed origin's preflight gets the allow headers without a backend call."""
    before = _upstream_requests(mesh)

    status, headers, _ = _preflight(mesh, ALLOWED_ORIGIN)

    assert status == 200
    assert headers["access-control-allow-origin"] == ALLOWED_ORIGIN
    assert "x-grpc-web" in headers["access-control-allow-headers"]
    assert "POST" in headers["access-control-allow-methods"]
    assert _upstream_requests(mesh) == before


def test_cors_preflight_from_other_origin_is_refused_and_not_forwarded(
    mesh: Mesh,
) -> None:
    """Another origin's preflight gets no allow-origin and never reaches a backend."""
    assert "https://elsewhere.example" not in mesh.layout.cors_origins
    before = _upstream_requests(mesh)

    _, headers, _ = _preflight(mesh, "https://elsewhere.example")

    assert "access-control-allow-origin" not in headers
    assert "x-envoy-upstream-service-time" not in headers
    assert _upstream_requests(mesh) == before


# Native gRPC tools -------------------------------------------------------------------


def test_grpc_bad_input_through_envoy_gets_invalid_argument(
    mesh: Mesh, match_id: str
) -> None:
    """Native gRPC callers get INVALID_ARGUMENT with a plain message, never JSON."""
    request = emostream_pb2.SendEmojiRequest(
        match_id=match_id, user_id="viewer-1", emoji_type="not an emoji"
    )
    request.timestamp.GetCurrentTime()

    with grpc.insecure_channel(mesh.layout.envoy_address) as channel:
        with pytest.raises(grpc.RpcError) as bad_field:
            emostream_pb2_grpc.EmojiIngestStub(channel).SendEmoji(request, timeout=10)
        not_a_message = channel.unary_unary("/emostream.v1.EmojiIngest/SendEmoji")
        with pytest.raises(grpc.RpcError) as bad_bytes:
            not_a_message(b"\xff\xff\xff", timeout=10)
        unknown_method = channel.unary_unary("/emostream.v1.Nowhere/Call")
        with pytest.raises(grpc.RpcError) as no_route:
            unknown_method(b"", timeout=10)

    for failure in (bad_field.value, bad_bytes.value):
        assert failure.code() == grpc.StatusCode.INVALID_ARGUMENT, failure
        assert not failure.details().startswith("{"), failure.details()
    assert "emoji_type" in bad_field.value.details()
    assert no_route.value.code() == grpc.StatusCode.UNIMPLEMENTED
    assert no_route.value.details() == envoy_config.NOT_FOUND_MESSAGE


def test_grpcurl_lists_both_public_services_through_envoy(mesh: Mesh) -> None:
    """Server reflection through Envoy advertises EmojiIngest and SwarmFeed."""
    if not GRPCURL.exists():
        pytest.skip(f"grpcurl is not installed at {GRPCURL}; run make bootstrap")

    result = subprocess.run(
        [
            str(GRPCURL),
            "-plaintext",
            "-max-time",
            "10",
            mesh.layout.envoy_address,
            "list",
        ],
        capture_output=True,
        text=True,
        timeout=30,
    )

    assert result.returncode == 0, result.stderr
    services = result.stdout.split()
    assert "emostream.v1.EmojiIngest" in services
    assert "emostream.v1.SwarmFeed" in services


def test_short_ghz_run_against_send_emoji_through_envoy_succeeds(
    mesh: Mesh, match_id: str
) -> None:
    """A bounded ghz run of SendEmoji via Envoy ends with every call OK."""
    if not GHZ.exists():
        pytest.skip(f"ghz is not installed at {GHZ}; run make bootstrap")
    calls = 200
    data = {
        "match_id": match_id,
        "user_id": "ghz-{{.RequestNumber}}",
        "emoji_type": "🔥",
        "timestamp": _now_rfc3339(),
    }

    result = subprocess.run(
        [
            str(GHZ), "--insecure",
            "--protoset", str(DESCRIPTOR_SET),
            "--call", "emostream.v1.EmojiIngest.SendEmoji",
            "--data", json.dumps(data),
            "--total", str(calls), "--concurrency", "10",
            "--timeout", "10s", "--duration-stop", "close",
            "--format", "json",
            mesh.layout.envoy_address,
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )  # fmt: skip

    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    assert report["statusCodeDistribution"] == {"OK": calls}, report.get(
        "errorDistribution"
    )
