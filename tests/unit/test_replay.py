"""Reading and pacing a recorded reactions file (pure, no network)."""

from __future__ import annotations

import pathlib

import pytest

from emostream.replay import (
    ReadStats,
    ReplayFileError,
    ReplayReport,
    amplified_users,
    read_reactions,
    schedule,
)
from tests.recordings import DATA_DIR

REAL_FILE = DATA_DIR / "tweets_jiocinema_ipl2023_m1_gt_v_csk_emoji.csv"

SYNTHETIC = """ts,user,msg,emoji,kind
2023-03-31T14:19:23.000Z,aaa,0,🔥,unicode
2023-03-31T14:19:23.000Z,bbb,1,👏,unicode
2023-03-31T14:19:24.500Z,aaa,2,:face-blue-smiling:,yt_custom
not-a-time,ccc,3,😭,unicode
2023-03-31T14:19:27.000Z,ddd,4,😭,unicode
"""


@pytest.fixture
def recording(tmp_path: pathlib.Path) -> pathlib.Path:
    path = tmp_path / "reactions.csv"
    path.write_text(SYNTHETIC, encoding="utf-8")
    return path


def test_reads_rows_and_counts_unreadable_times(recording: pathlib.Path) -> None:
    """Rows come with parsed UTC times; a row with a bad ts is skipped, counted."""
    stats = ReadStats()
    reactions = list(read_reactions(recording, stats=stats))

    assert [(r.user, r.emoji) for r in reactions] == [
        ("aaa", "🔥"),
        ("bbb", "👏"),
        ("aaa", ":face-blue-smiling:"),
        ("ddd", "😭"),
    ]
    assert reactions[0].at.isoformat() == "2023-03-31T14:19:23+00:00"
    assert stats.rows == 4
    assert stats.unreadable == 1


def test_limit_stops_after_that_many_rows(recording: pathlib.Path) -> None:
    """--limit 2 reads the first two reactions only."""
    assert len(list(read_reactions(recording, limit=2))) == 2


def test_file_without_required_columns_is_refused(tmp_path: pathlib.Path) -> None:
    """A header without the emoji column is an error naming the missing column."""
    path = tmp_path / "bad.csv"
    path.write_text("ts,user\n2023-03-31T14:19:23.000Z,a\n", encoding="utf-8")

    with pytest.raises(ReplayFileError, match="emoji"):
        list(read_reactions(path))


def test_schedule_keeps_the_recorded_pace_scaled_by_speed(
    recording: pathlib.Path,
) -> None:
    """At speed 2 the gaps halve; reactions recorded at one moment share a batch."""
    batches = list(schedule(read_reactions(recording), match_id="m1", speed=2.0))

    assert [b.offset_s for b in batches] == [0.0, 0.75, 2.0]
    assert [len(b.taps) for b in batches] == [2, 1, 1]
    assert {t.match_id for b in batches for t in b.taps} == {"m1"}
    assert all(t.at is None for b in batches for t in b.taps)


def test_amplify_turns_each_reaction_into_k_taps_from_distinct_users(
    recording: pathlib.Path,
) -> None:
    """With amplify 3 every reaction is three taps of the same emoji, three users."""
    batches = list(schedule(read_reactions(recording), match_id="m1", amplify=3))

    first = batches[0].taps
    assert len(first) == 6
    assert [t.user_id for t in first] == [
        "aaa.0", "aaa.1", "aaa.2", "bbb.0", "bbb.1", "bbb.2",
    ]  # fmt: skip
    assert [t.emoji for t in first] == ["🔥"] * 3 + ["👏"] * 3
    assert sum(len(b.taps) for b in batches) == 12
    assert amplified_users("aaa", 1) == ["aaa"]


def test_duration_drops_batches_due_later(recording: pathlib.Path) -> None:
    """--duration 2 keeps the batches due within the first two seconds."""
    batches = list(schedule(read_reactions(recording), match_id="m1", duration_s=2.0))

    assert [b.offset_s for b in batches] == [0.0, 1.5]


def test_tick_groups_close_reactions_into_one_batch(recording: pathlib.Path) -> None:
    """With a 2 s tick the reactions at 0 s and 1.5 s go out together."""
    batches = list(schedule(read_reactions(recording), match_id="m1", tick_s=2.0))

    assert [(b.offset_s, len(b.taps)) for b in batches] == [(0.0, 3), (4.0, 1)]


def test_schedule_refuses_nonsense_factors(recording: pathlib.Path) -> None:
    """Speed must be positive and amplify at least one."""
    with pytest.raises(ValueError, match="speed"):
        list(schedule(read_reactions(recording), match_id="m", speed=0))
    with pytest.raises(ValueError, match="amplify"):
        list(schedule(read_reactions(recording), match_id="m", amplify=0))


def test_report_summary_counts_refusals_by_field() -> None:
    """The summary has the totals, then refusals per field, then the reasons."""
    report = ReplayReport(sent=5, accepted=3)
    report.refused[("emoji_type", "must be exactly one emoji")] += 2

    lines = report.summary_lines()

    assert lines[0] == "summary sent=5 accepted=3 refused=2 failed=0"
    assert lines[1] == "refused field=emoji_type count=2"
    assert lines[2].startswith("  reason field=emoji_type count=2 reason=")


@pytest.mark.skipif(
    not REAL_FILE.exists(),
    reason=f"the recorded tweets are not at {REAL_FILE} (set EMOSTREAM_DATA_DIR)",
)
def test_real_recording_schedules_in_time_order() -> None:
    """The IPL tweet recording reads fully and its batches are due in order."""
    stats = ReadStats()
    batches = list(
        schedule(read_reactions(REAL_FILE, stats=stats), match_id="m", speed=60)
    )

    offsets = [b.offset_s for b in batches]
    assert stats.rows == 3175
    assert stats.unreadable == 0
    assert offsets == sorted(offsets)
    assert sum(len(b.taps) for b in batches) == 3175
