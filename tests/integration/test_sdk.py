"""The SDK and the CLI through Envoy, against the real ingest service and Kafka."""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import pathlib
import subprocess
import sys

import pytest

from deploy.mesh import Mesh
from emostream import Client, InvalidArgument, InvalidEmoji, Swarm, Tap
from tests.integration.conftest import ROLES

pytestmark = pytest.mark.integration


async def test_send_through_envoy_returns_the_canonical_emoji(
    mesh: Mesh, match_id: str
) -> None:
    """A heart without its variation selector comes back fully qualified."""
    async with Client(mesh.layout.envoy_address) as client:
        assert await client.send(match_id, "viewer-1", "🔥") == "🔥"
        assert await client.send(match_id, "viewer-1", "\u2764") == "\u2764\ufe0f"


async def test_bad_input_through_envoy_raises_the_typed_error(
    mesh: Mesh, match_id: str
) -> None:
    """Two emojis raise InvalidEmoji; a bad user id raises naming user_id."""
    async with Client(mesh.layout.envoy_address) as client:
        with pytest.raises(InvalidEmoji) as bad_emoji:
            await client.send(match_id, "viewer-1", "🔥🔥")
        with pytest.raises(InvalidArgument) as bad_user:
            await client.send(match_id, "viewer one", "🔥")

    assert bad_emoji.value.field == "emoji_type"
    assert bad_user.value.field == "user_id"


async def test_send_many_through_envoy_accepts_good_and_names_bad_items(
    mesh: Mesh, match_id: str
) -> None:
    """Of 25 taps sent in batches of 10, the two bad ones come back by index."""
    taps = [Tap(match_id, f"viewer-{i}", "👏") for i in range(25)]
    taps[3] = Tap(match_id, "viewer-3", "not an emoji")
    taps[21] = Tap(match_id, "", "👏")

    async with Client(mesh.layout.envoy_address, max_batch=10) as client:
        result = await client.send_many(taps)

    assert result.accepted == 23
    assert [(r.index, r.field) for r in result.rejected] == [
        (3, "emoji_type"),
        (21, "user_id"),
    ]


def test_replay_cli_through_envoy_reports_accepted_and_refused(
    mesh: Mesh, match_id: str, tmp_path: pathlib.Path
) -> None:
    """`emostream replay` of four rows, amplified 3x, counts 9 accepted, 3 refused."""
    recording = tmp_path / "taps.csv"
    recording.write_text(
        "ts,user,msg,emoji,kind\n"
        "2023-03-31T14:19:23.000Z,aaa,0,🔥,unicode\n"
        "2023-03-31T14:19:23.200Z,bbb,1,:face-blue-smiling:,yt_custom\n"
        "2023-03-31T14:19:23.400Z,ccc,2,😭,unicode\n"
        "2023-03-31T14:19:23.600Z,ddd,3,❤,unicode\n",
        encoding="utf-8",
    )

    done = subprocess.run(
        [sys.executable, "-m", "emostream.cli", "--address",
         mesh.layout.envoy_address, "replay", str(recording), "--match", match_id,
         "--speed", "4", "--amplify", "3"],
        capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip

    assert done.returncode == 0, done.stderr
    assert "summary sent=12 accepted=9 refused=3 failed=0" in done.stdout
    assert "refused field=emoji_type count=3" in done.stdout


needs_fanout = pytest.mark.skipif(
    "aggregator" not in ROLES or "fanout" not in ROLES,
    reason="needs the aggregator and fan-out roles (EMOSTREAM_TEST_ROLES)",
)


@needs_fanout
async def test_subscribe_through_envoy_sees_every_tap_once_in_seq_order(
    mesh: Mesh, match_id: str
) -> None:
    """1500 🔥 taps show up in swarms whose seqs follow one another; resuming
    replays the same swarms from the node's history."""
    address = mesh.layout.envoy_address
    swarms: list[Swarm] = []
    first_swarm = asyncio.Event()

    async def follow() -> None:
        async with Client(address) as viewer:
            async for swarm in viewer.subscribe(match_id, viewer_id="sdk-test"):
                swarms.append(swarm)
                first_swarm.set()

    async with Client(address) as client:
        follow_task = asyncio.create_task(follow())
        try:
            # Warm-up taps until the viewer's stream carries a swarm, so the
            # counted taps below cannot be published before it joined.
            async with asyncio.timeout(90):
                while not first_swarm.is_set():
                    await client.send(match_id, "warm-up", "👋")
                    with contextlib.suppress(TimeoutError):
                        await asyncio.wait_for(first_swarm.wait(), timeout=1.0)

            taps = [Tap(match_id, f"fan-{i}", "🔥") for i in range(1500)]
            assert (await client.send_many(taps)).accepted == 1500

            async with asyncio.timeout(60):
                while fire_count(swarms) < 1500:
                    await asyncio.sleep(0.2)
        except TimeoutError:
            pytest.fail(f"swarms seen: {[(s.seq, fire_count([s])) for s in swarms]}")
        finally:
            follow_task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await follow_task

    assert fire_count(swarms) == 1500
    seqs = [(s.first_seq, s.seq) for s in swarms]
    assert all(b[0] == a[1] + 1 for a, b in itertools.pairwise(seqs)), seqs

    replayed: list[Swarm] = []
    async with Client(address) as again, asyncio.timeout(30):
        after = swarms[0].seq
        async for swarm in again.subscribe(match_id, resume_after_seq=after):
            replayed.append(swarm)
            if swarm.seq >= swarms[-1].seq:
                break
    assert [s.seq for s in replayed] == list(range(after + 1, swarms[-1].seq + 1))


def fire_count(swarms: list[Swarm]) -> int:
    return sum(c.raw for s in swarms for c in s.emojis if c.emoji == "🔥")
