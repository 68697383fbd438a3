"""A short demo through the whole mesh: the main job's check holds."""

from __future__ import annotations

import asyncio
import io

import pytest

from deploy.demo import DemoOptions, play_crowd
from deploy.mesh import Mesh
from tests.recordings import DATA_DIR

from .conftest import ROLES

pytestmark = pytest.mark.skipif(
    not {"aggregator", "fanout"} <= set(ROLES),
    reason="the demo needs the aggregator and the fan-out tree",
)


def test_short_synthetic_demo_conserves_every_tap(mesh: Mesh, match_id: str) -> None:
    """Every accepted tap is counted once in the swarms, and every watching
    viewer receives every swarm of its match."""
    options = DemoOptions(
        duration_s=5, matches=2, viewers=12, watch=1, crowd_rate_per_s=200
    )
    out = io.StringIO()

    summary = asyncio.run(
        play_crowd(options, mesh.layout.envoy_address, out, match_prefix=match_id)
    )

    assert summary.report.accepted > 0
    assert sum(summary.accepted_by_match.values()) == summary.report.accepted
    assert summary.ok, "\n".join(summary.lines())
    for tally in summary.tallies:
        assert tally.ranges, f"{tally.viewer_id} received no swarm"


def test_demo_replays_a_recorded_file_and_counts_refusals(
    mesh: Mesh, match_id: str
) -> None:
    """A real recording replayed fast is conserved; rows that are not one emoji
    (YouTube shortcodes) are refused and not counted."""
    recording = DATA_DIR / "youtube_livechat_ishowspeed_hk_2025-03-31_emoji.csv"
    if not recording.is_file():
        pytest.skip(f"real recordings not found at {DATA_DIR} (EMOSTREAM_DATA_DIR)")
    options = DemoOptions(
        file=recording, duration_s=5, speed=20, matches=1, viewers=4, watch=0
    )

    summary = asyncio.run(
        play_crowd(
            options, mesh.layout.envoy_address, io.StringIO(), match_prefix=match_id
        )
    )

    assert summary.report.refused_total > 0
    assert summary.ok, "\n".join(summary.lines())
