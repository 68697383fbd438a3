"""The synthetic crowd generator (pure, deterministic per seed)."""

from __future__ import annotations

import json
import pathlib
from collections import Counter

import pytest

from emostream.crowd import (
    EVENT_EMOJIS,
    CrowdShape,
    MatchEvent,
    batches,
    cricsheet_events,
    crowd,
    synthetic_events,
)
from tests.recordings import CRICSHEET_DIR

QUIET = CrowdShape(viewers=50, base_rate_per_s=5.0, burst_taps=300, burst_s=2.0)


def test_taps_come_in_time_order_within_the_duration() -> None:
    """Every tap is (at_s, match, user, emoji), ordered, inside [0, duration)."""
    taps = list(crowd(["m1", "m2"], [], duration_s=10.0, shape=QUIET))

    assert taps == sorted(taps)
    assert all(0 <= t.at_s <= 10.0 for t in taps)
    assert {t.match_id for t in taps} == {"m1", "m2"}
    at_s, _match_id, user_id, emoji = taps[0]
    assert isinstance(at_s, float) and user_id and emoji


def test_same_seed_gives_the_same_crowd() -> None:
    """The generator is deterministic for a seed, and differs for another seed."""
    events = [MatchEvent(1.0, "m1", "six")]

    first = list(crowd(["m1"], events, duration_s=5.0, shape=QUIET, seed=7))
    again = list(crowd(["m1"], events, duration_s=5.0, shape=QUIET, seed=7))
    other = list(crowd(["m1"], events, duration_s=5.0, shape=QUIET, seed=8))

    assert first == again
    assert first != other


@pytest.mark.parametrize("kind", ["six", "four", "wicket"])
def test_event_makes_a_burst_of_matching_emojis(kind: str) -> None:
    """After an event the match's taps jump, mostly in that event's emojis."""
    events = [MatchEvent(5.0, "m1", kind)]
    taps = list(crowd(["m1"], events, duration_s=10.0, shape=QUIET, seed=1))

    burst = [t for t in taps if 5.0 <= t.at_s < 7.0]
    top, _ = Counter(t.emoji for t in burst).most_common(1)[0]
    assert top in EVENT_EMOJIS[kind]
    assert len(burst) == pytest.approx(300 + 10, rel=0.2)


def test_synthetic_events_fall_within_the_duration_for_each_match() -> None:
    """Invented events carry known kinds, for the listed matches, in time order."""
    events = synthetic_events(["a", "b"], duration_s=600.0, seed=3)

    assert events
    assert {e.match_id for e in events} <= {"a", "b"}
    assert {e.kind for e in events} <= set(EVENT_EMOJIS)
    assert [e.at_s for e in events] == sorted(e.at_s for e in events)
    assert all(0 <= e.at_s < 600.0 for e in events)


def test_cricsheet_json_gives_one_event_per_six_four_and_wicket(
    tmp_path: pathlib.Path,
) -> None:
    """Deliveries map to events at ball_interval_s apart; dots make none."""
    deliveries = [
        {"runs": {"batter": 0}},
        {"runs": {"batter": 6}},
        {"runs": {"batter": 4}},
        {"runs": {"batter": 0}, "wickets": [{"kind": "bowled"}]},
    ]
    path = tmp_path / "match.json"
    path.write_text(json.dumps({"innings": [{"overs": [{"deliveries": deliveries}]}]}))

    events = cricsheet_events(path, match_id="m1", ball_interval_s=2.0)

    assert [(e.at_s, e.kind) for e in events] == [
        (2.0, "six"),
        (4.0, "four"),
        (6.0, "wicket"),
    ]


def test_batches_group_taps_by_tick() -> None:
    """Taps within one 0.5 s tick go out together, due at the tick's start."""
    taps = list(crowd(["m1"], [], duration_s=2.0, shape=QUIET, seed=2))

    grouped = list(batches(taps, tick_s=0.5))

    assert [b.offset_s for b in grouped] == sorted({b.offset_s for b in grouped})
    assert sum(len(b.taps) for b in grouped) == len(taps)
    assert all(b.offset_s in (0.0, 0.5, 1.0, 1.5) for b in grouped)


@pytest.mark.skipif(
    not (CRICSHEET_DIR / "1359479.json").exists(),
    reason=f"the Cricsheet files are not in {CRICSHEET_DIR}",
)
def test_real_cricsheet_json_and_csv_agree() -> None:
    """RCB v MI from JSON and from the flat CSV give the same events."""
    from_json = cricsheet_events(CRICSHEET_DIR / "1359479.json", match_id="m")
    from_csv = cricsheet_events(
        CRICSHEET_DIR / "ball_by_ball.csv", match_id="m", cricsheet_match="1359479"
    )

    assert from_json == from_csv
    assert Counter(e.kind for e in from_json)["wicket"] == 9
