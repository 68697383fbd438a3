"""A synthetic crowd: taps that burst with the match, no recording needed.

Pure and deterministic for a given seed: ``crowd`` yields ``CrowdTap`` tuples
``(at_s, match_id, user_id, emoji)`` in time order, from a steady background
murmur plus a burst of matching emojis after each event (a six, a four, a
wicket). Events come from ``synthetic_events`` or from a Cricsheet
ball-by-ball file (``cricsheet_events``), one delivery every
``ball_interval_s`` since the files carry no wall-clock time per ball.
"""

from __future__ import annotations

import csv
import json
import math
import pathlib
import random
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any, NamedTuple

from emostream.client import Tap
from emostream.replay import ScheduledBatch

# Emojis of a burst, by event, most likely first.
EVENT_EMOJIS: dict[str, tuple[str, ...]] = {
    "six": ("🔥", "👏", "🚀", "💥", "😍"),
    "four": ("👏", "🔥", "🏏", "💪"),
    "wicket": ("😭", "😱", "💔", "🤯", "😡"),
}
BACKGROUND_EMOJIS: tuple[str, ...] = ("😂", "❤️", "🙏", "🏏", "😍", "👏")


@dataclass(frozen=True)
class MatchEvent:
    """Something the crowd reacts to: ``kind`` is six, four or wicket."""

    at_s: float
    match_id: str
    kind: str


class CrowdTap(NamedTuple):
    """One tap of the synthetic crowd, ``at_s`` seconds after the start."""

    at_s: float
    match_id: str
    user_id: str
    emoji: str


@dataclass(frozen=True)
class CrowdShape:
    """How big and how loud the crowd is.

    ``viewers`` per match tap; the background is ``base_rate_per_s`` taps per
    second per match; each event adds ``burst_taps`` taps, most in the first
    second, fading over ``burst_s``.
    """

    viewers: int = 500
    base_rate_per_s: float = 20.0
    burst_taps: int = 400
    burst_s: float = 4.0
    tick_s: float = 0.1

    def __post_init__(self) -> None:
        if self.viewers < 1:
            raise ValueError("viewers must be at least 1")
        if self.base_rate_per_s < 0 or self.burst_taps < 0:
            raise ValueError("rates must not be negative")
        if self.burst_s <= 0 or self.tick_s <= 0:
            raise ValueError("burst_s and tick_s must be positive")


def _event_of(runs_batter: int, wicket: bool) -> str | None:
    if wicket:
        return "wicket"
    if runs_batter == 6:
        return "six"
    if runs_batter == 4:
        return "four"
    return None


def synthetic_events(
    match_ids: Sequence[str],
    *,
    duration_s: float,
    ball_interval_s: float = 4.0,
    seed: int = 0,
) -> list[MatchEvent]:
    """Invents each match's notable balls, one ball every ``ball_interval_s``."""
    rng = random.Random(seed)
    events: list[MatchEvent] = []
    for match_id in match_ids:
        at_s = rng.uniform(0, ball_interval_s)
        while at_s < duration_s:
            draw = rng.random()
            kind = "six" if draw < 0.07 else "four" if draw < 0.2 else None
            if kind is None and draw > 0.95:
                kind = "wicket"
            if kind is not None:
                events.append(MatchEvent(at_s, match_id, kind))
            at_s += ball_interval_s
    return sorted(events, key=lambda e: e.at_s)


def cricsheet_events(
    path: str | pathlib.Path,
    *,
    match_id: str,
    ball_interval_s: float = 4.0,
    cricsheet_match: str | None = None,
) -> list[MatchEvent]:
    """The sixes, fours and wickets of a Cricsheet match, one ball per interval.

    Takes a Cricsheet JSON file, or the flat ball-by-ball CSV (columns
    match_id, runs_batter, wicket_kind...) of which ``cricsheet_match`` (by
    default the first) is used. Every delivery, extras included, takes
    ``ball_interval_s``.
    """
    source = pathlib.Path(path)
    if source.suffix.lower() == ".json":
        kinds = _json_deliveries(json.loads(source.read_text(encoding="utf-8")))
    else:
        kinds = _csv_deliveries(source, cricsheet_match)
    return [
        MatchEvent(ball * ball_interval_s, match_id, kind)
        for ball, kind in enumerate(kinds)
        if kind is not None
    ]


def _json_deliveries(document: dict[str, Any]) -> list[str | None]:
    kinds: list[str | None] = []
    for innings in document.get("innings", []):
        for over in innings.get("overs", []):
            for delivery in over.get("deliveries", []):
                runs = int(delivery.get("runs", {}).get("batter", 0))
                kinds.append(_event_of(runs, bool(delivery.get("wickets"))))
    return kinds


def _csv_deliveries(
    source: pathlib.Path, cricsheet_match: str | None
) -> list[str | None]:
    kinds: list[str | None] = []
    with open(source, newline="", encoding="utf-8") as rows:
        for row in csv.DictReader(rows):
            if cricsheet_match is None:
                cricsheet_match = row["match_id"]
            if row["match_id"] != cricsheet_match:
                continue
            runs = int(row.get("runs_batter") or 0)
            kinds.append(_event_of(runs, bool(row.get("wicket_kind"))))
    return kinds


def crowd(
    match_ids: Sequence[str],
    events: Iterable[MatchEvent],
    *,
    duration_s: float,
    shape: CrowdShape | None = None,
    seed: int = 0,
) -> Iterator[CrowdTap]:
    """Yields the crowd's taps for ``duration_s`` seconds, in time order.

    Every match in ``match_ids`` gets the background murmur; events for
    matches not listed are ignored.
    """
    form = shape or CrowdShape()
    rng = random.Random(seed)
    pending = sorted((e for e in events if e.match_id in match_ids), key=_at)
    active: list[MatchEvent] = []
    # The burst's taps follow an exponential fade; most land in the first second.
    fade_per_s = 3.0 / form.burst_s

    ticks = math.ceil(duration_s / form.tick_s)
    for tick in range(ticks):
        start_s = tick * form.tick_s
        end_s = min(start_s + form.tick_s, duration_s)
        while pending and pending[0].at_s < end_s:
            active.append(pending.pop(0))
        active = [e for e in active if e.at_s + form.burst_s > start_s]

        taps: list[CrowdTap] = []
        for index, match_id in enumerate(match_ids):
            expected = form.base_rate_per_s * (end_s - start_s)
            for _ in range(_draw(rng, expected)):
                emoji = rng.choice(BACKGROUND_EMOJIS)
                taps.append(_tap(rng, form, index, match_id, emoji, start_s, end_s))
        for event in active:
            share = _burst_share(event, start_s, end_s, fade_per_s, form.burst_s)
            index = match_ids.index(event.match_id)
            choices = EVENT_EMOJIS[event.kind]
            for _ in range(_draw(rng, form.burst_taps * share)):
                emoji = choices[min(int(rng.expovariate(1.0)), len(choices) - 1)]
                low_s = max(start_s, event.at_s)
                taps.append(_tap(rng, form, index, event.match_id, emoji, low_s, end_s))
        yield from sorted(taps)


def _at(event: MatchEvent) -> float:
    return event.at_s


def _draw(rng: random.Random, expected: float) -> int:
    """A whole number of taps whose mean is ``expected``."""
    whole = int(expected)
    return whole + (1 if rng.random() < expected - whole else 0)


def _burst_share(
    event: MatchEvent, start_s: float, end_s: float, fade_per_s: float, burst_s: float
) -> float:
    """The part of an event's burst that falls between ``start_s`` and ``end_s``."""

    def done_by(t_s: float) -> float:
        elapsed = min(max(0.0, t_s - event.at_s), burst_s)
        return 1 - math.exp(-fade_per_s * elapsed)

    total = done_by(event.at_s + burst_s)
    return (done_by(end_s) - done_by(start_s)) / total


def _tap(
    rng: random.Random,
    form: CrowdShape,
    index: int,
    match_id: str,
    emoji: str,
    low_s: float,
    high_s: float,
) -> CrowdTap:
    user = f"fan{index}-{rng.randrange(form.viewers)}"
    return CrowdTap(round(rng.uniform(low_s, high_s), 4), match_id, user, emoji)


def batches(
    taps: Iterable[CrowdTap], *, tick_s: float = 0.1
) -> Iterator[ScheduledBatch]:
    """Groups taps into batches due at multiples of ``tick_s``, for ``replay.play``."""
    due_s: float | None = None
    group: list[Tap] = []
    for tap in taps:
        offset_s = math.floor(tap.at_s / tick_s) * tick_s
        if group and offset_s != due_s:
            yield ScheduledBatch(due_s or 0.0, tuple(group))
            group = []
        due_s = offset_s
        group.append(Tap(tap.match_id, tap.user_id, tap.emoji))
    if group:
        yield ScheduledBatch(due_s or 0.0, tuple(group))


def match_night(
    match_ids: Sequence[str],
    *,
    duration_s: float,
    speed: float = 1.0,
    shape: CrowdShape | None = None,
    cricsheet: str | pathlib.Path | None = None,
    ball_interval_s: float = 4.0,
    seed: int = 0,
) -> tuple[list[MatchEvent], Iterator[ScheduledBatch]]:
    """The crowd of ``match_ids`` for ``duration_s`` real seconds, ready to play.

    The match runs ``speed`` times faster than recorded; its events are the
    balls of ``cricsheet`` when given (every match follows the same file),
    else invented. Returns the events and the batches for ``replay.play``.
    """
    recorded_s = duration_s * speed
    if cricsheet is not None:
        events = [
            event
            for match_id in match_ids
            for event in cricsheet_events(
                cricsheet, match_id=match_id, ball_interval_s=ball_interval_s
            )
        ]
    else:
        events = synthetic_events(
            match_ids, duration_s=recorded_s, ball_interval_s=ball_interval_s, seed=seed
        )
    taps = crowd(match_ids, events, duration_s=recorded_s, shape=shape, seed=seed)
    scheduled = (
        ScheduledBatch(batch.offset_s / speed, batch.taps) for batch in batches(taps)
    )
    return events, scheduled
