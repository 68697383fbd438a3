"""The emostream command line against small local gRPC servers."""

from __future__ import annotations

import pathlib
import socket
import threading
from collections.abc import Iterator
from concurrent import futures

import emoji as emoji_data
import grpc
import pytest
from google.protobuf import timestamp_pb2

from emostream.cli import build_parser, main, render_swarm
from emostream.v1 import emostream_pb2, emostream_pb2_grpc


class FakeIngest(emostream_pb2_grpc.EmojiIngestServicer):
    """Accepts single emojis, refuses anything else naming emoji_type."""

    def __init__(self) -> None:
        self.accepted: list[emostream_pb2.SendEmojiRequest] = []
        self.lock = threading.Lock()

    def SendEmoji(self, request, context):  # type: ignore[no-untyped-def]
        if not emoji_data.is_emoji(request.emoji_type):
            context.abort(
                grpc.StatusCode.INVALID_ARGUMENT,
                "emoji_type: must be exactly one emoji",
            )
        return emostream_pb2.SendEmojiResponse(emoji_type=request.emoji_type)

    def SendEmojis(self, request, context):  # type: ignore[no-untyped-def]
        reply = emostream_pb2.SendEmojisResponse()
        for index, item in enumerate(request.emojis):
            if emoji_data.is_emoji(item.emoji_type):
                reply.accepted += 1
                with self.lock:
                    self.accepted.append(item)
            else:
                reply.rejected.add(
                    index=index, field="emoji_type", reason="must be exactly one emoji"
                )
        return reply


class FakeFeed(emostream_pb2_grpc.SwarmFeedServicer):
    """Streams seqs 1..5 of a match, a heartbeat between, then stays open."""

    def Subscribe(self, request, context):  # type: ignore[no-untyped-def]
        for seq in range(1, 6):
            yield emostream_pb2.Swarm(notice=emostream_pb2.NOTICE_HEARTBEAT)
            yield sample_swarm(request.match_id, seq)
        while context.is_active():
            threading.Event().wait(0.05)


def sample_swarm(match_id: str, seq: int) -> emostream_pb2.Swarm:
    window_end = timestamp_pb2.Timestamp(seconds=1_700_000_000)
    return emostream_pb2.Swarm(
        match_id=match_id,
        seq=seq,
        first_seq=seq,
        viewers=12,
        total=3120,
        window_end=window_end,
        emojis=[
            emostream_pb2.EmojiCount(emoji="🔥", raw=3000, shown=3),
            emostream_pb2.EmojiCount(emoji="👏", raw=120, shown=1),
        ],
        taps=[
            emostream_pb2.TapBucket(start_unix_ms=1_699_999_998_000, count=3000),
            emostream_pb2.TapBucket(start_unix_ms=1_699_999_999_500, count=120),
        ],
    )


@pytest.fixture(scope="module")
def server() -> Iterator[tuple[FakeIngest, str]]:
    ingest = FakeIngest()
    grpc_server = grpc.server(futures.ThreadPoolExecutor(max_workers=8))
    emostream_pb2_grpc.add_EmojiIngestServicer_to_server(ingest, grpc_server)
    emostream_pb2_grpc.add_SwarmFeedServicer_to_server(FakeFeed(), grpc_server)
    port = grpc_server.add_insecure_port("127.0.0.1:0")
    grpc_server.start()
    try:
        yield ingest, f"127.0.0.1:{port}"
    finally:
        grpc_server.stop(0).wait(5)


@pytest.fixture
def address(server: tuple[FakeIngest, str]) -> str:
    return server[1]


def test_missing_arguments_exit_2(capsys: pytest.CaptureFixture[str]) -> None:
    """`emostream send MATCH` without user and emoji is a usage error."""
    with pytest.raises(SystemExit) as exited:
        main(["send", "m1"])

    assert exited.value.code == 2
    assert "user" in capsys.readouterr().err


@pytest.mark.parametrize(
    ("argv", "named"),
    [
        (["replay", "x.csv", "--speed", "0"], "--speed"),
        (["replay", "x.csv", "--amplify", "0"], "--amplify"),
        (["watch", "m1", "--count", "-1"], "--count"),
        (["send", "m1", "u1", "🔥", "--at", "yesterday"], "--at"),
        (["dance"], "dance"),
    ],
)
def test_bad_option_values_exit_2_naming_the_option(
    argv: list[str], named: str, capsys: pytest.CaptureFixture[str]
) -> None:
    """Out-of-range or unreadable option values are refused before any call."""
    with pytest.raises(SystemExit) as exited:
        main(argv)

    assert exited.value.code == 2
    assert named in capsys.readouterr().err


def test_send_prints_the_canonical_emoji(
    address: str, match_id: str, capsys: pytest.CaptureFixture[str]
) -> None:
    """A good tap prints the emoji as counted and exits 0."""
    assert main(["--address", address, "send", match_id, "u1", "🔥"]) == 0
    assert capsys.readouterr().out.strip() == "🔥"


def test_send_of_invalid_emoji_exits_2_naming_the_field(
    address: str, match_id: str, capsys: pytest.CaptureFixture[str]
) -> None:
    """A refused emoji exits 2 with an error that names emoji_type."""
    assert main(["--address", address, "send", match_id, "u1", "hello"]) == 2
    err = capsys.readouterr().err
    assert err.strip() == (
        "emostream: error: invalid emoji_type: must be exactly one emoji"
    )


def test_send_without_a_server_exits_1(
    match_id: str, capsys: pytest.CaptureFixture[str]
) -> None:
    """When nothing listens the command fails with exit 1 and a message."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]

    assert main(["--address", f"127.0.0.1:{port}", "send", match_id, "u", "🔥"]) == 1
    assert "emostream: error:" in capsys.readouterr().err


def test_replay_counts_accepted_and_refused_by_field(
    server: tuple[FakeIngest, str],
    match_id: str,
    tmp_path: pathlib.Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """Amplified rows are sent; a row whose emoji is a shortcode is refused."""
    ingest, address = server
    csv_path = tmp_path / "taps.csv"
    csv_path.write_text(
        "ts,user,emoji,kind\n"
        "2023-03-31T14:19:23.000Z,a,🔥,unicode\n"
        "2023-03-31T14:19:23.500Z,b,:hands-yellow-heart-red:,yt_custom\n"
        "2023-03-31T14:19:24.000Z,c,😭,unicode\n",
        encoding="utf-8",
    )

    status = main(
        ["--address", address, "replay", str(csv_path), "--match", match_id,
         "--speed", "50", "--amplify", "2"]
    )  # fmt: skip

    out = capsys.readouterr().out
    assert status == 0
    assert "summary sent=6 accepted=4 refused=2 failed=0" in out
    assert "refused field=emoji_type count=2" in out
    mine = [t for t in ingest.accepted if t.match_id == match_id]
    assert sorted(t.user_id for t in mine) == ["a.0", "a.1", "c.0", "c.1"]


def test_replay_of_a_missing_file_exits_2(
    address: str, tmp_path: pathlib.Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A file that is not there is reported, not a traceback."""
    status = main(["--address", address, "replay", str(tmp_path / "nope.csv")])

    assert status == 2
    assert "nope.csv" in capsys.readouterr().err


def test_watch_count_prints_that_many_swarms(
    address: str, match_id: str, capsys: pytest.CaptureFixture[str]
) -> None:
    """--count 2 shows seqs 1 and 2 with emojis, counts and viewers, then exits."""
    assert main(["--address", address, "watch", match_id, "--count", "2"]) == 0

    out = capsys.readouterr().out
    assert f"match {match_id}  seq 1" in out
    assert "seq 2" in out
    assert "seq 3" not in out
    assert "🔥🔥🔥  (3000)" in out
    assert "viewers 12" in out


def test_render_caps_the_width_and_shows_both_latencies() -> None:
    """Emojis are drawn at most `width` times; latency counts from tap and window."""
    swarm = sample_swarm("m1", 9)
    swarm.first_seq = 7

    lines = render_swarm(swarm, received_s=1_700_000_001.0, width=2)

    assert lines[0].startswith("match m1  seq 9 (merged 7-9)  viewers 12")
    assert "🔥🔥 +1  (3000)" in lines[1]
    assert lines[-1] == ("  latency: since newest tap 1.50 s, since window end 1.00 s")


def test_crowd_sends_a_short_synthetic_crowd(
    address: str, match_id: str, capsys: pytest.CaptureFixture[str]
) -> None:
    """Two seconds of crowd at speed 4 are sent and all accepted."""
    status = main(
        ["--address", address, "crowd", "--match", match_id, "--duration", "0.5",
         "--speed", "4", "--rate", "50", "--quiet"]
    )  # fmt: skip

    out = capsys.readouterr().out
    assert status == 0
    summary = next(line for line in out.splitlines() if line.startswith("summary"))
    fields = dict(part.split("=") for part in summary.split()[1:])
    assert int(fields["sent"]) > 0
    assert fields["accepted"] == fields["sent"]


def test_address_follows_the_port_base(monkeypatch: pytest.MonkeyPatch) -> None:
    """With EMOSTREAM_PORT_BASE set, the CLI talks to that local mesh's Envoy."""
    monkeypatch.setenv("EMOSTREAM_PORT_BASE", "36080")
    assert build_parser().parse_args(["watch", "m1"]).address == "127.0.0.1:36080"

    monkeypatch.delenv("EMOSTREAM_PORT_BASE")
    assert build_parser().parse_args(["watch", "m1"]).address == "127.0.0.1:8080"
