"""Replaying recorded reactions: read, schedule, then send at the recorded pace.

Reading and scheduling are pure (``read_reactions``, ``schedule``): they turn
rows into batches stamped with the moment, in seconds from the start, at
which they are due. Only ``play`` sleeps and talks to the network.
"""

from __future__ import annotations

import asyncio
import csv
import datetime as dt
import logging
import pathlib
import time
from collections import Counter
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field

from emostream.client import BatchResult, Client, EmoStreamError, Tap

log = logging.getLogger(__name__)

REQUIRED_COLUMNS = ("ts", "user", "emoji")
# The summary lists this many refusal reasons, most frequent first.
MAX_REASON_LINES = 8


class ReplayFileError(ValueError):
    """The file cannot be replayed: missing header or required columns."""


@dataclass(frozen=True)
class Reaction:
    """One recorded reaction: when, by whom, which emoji (as recorded)."""

    at: dt.datetime
    user: str
    emoji: str


@dataclass(frozen=True)
class ScheduledBatch:
    """Taps due together, ``offset_s`` seconds after the replay starts."""

    offset_s: float
    taps: tuple[Tap, ...]


@dataclass
class ReadStats:
    """Rows read from a file, and rows skipped because ``ts`` was unreadable."""

    rows: int = 0
    unreadable: int = 0


def parse_ts(text: str) -> dt.datetime:
    """Parses an ISO-8601 time such as ``2023-03-31T14:19:23.000Z`` (UTC)."""
    moment = dt.datetime.fromisoformat(text.strip())
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=dt.UTC)
    return moment


def read_reactions(
    path: str | pathlib.Path,
    *,
    limit: int | None = None,
    stats: ReadStats | None = None,
) -> Iterator[Reaction]:
    """Yields the reactions of a CSV file with at least columns ts, user, emoji.

    Other columns are ignored. Rows whose ``ts`` cannot be read are skipped and
    counted in ``stats``; the emoji is passed on as recorded, for the server to
    judge. ``limit`` stops after that many reactions.
    """
    counts = stats if stats is not None else ReadStats()
    with open(path, newline="", encoding="utf-8") as source:
        reader = csv.DictReader(source)
        missing = [c for c in REQUIRED_COLUMNS if c not in (reader.fieldnames or ())]
        if missing:
            raise ReplayFileError(
                f"{path}: header must name columns {', '.join(REQUIRED_COLUMNS)}; "
                f"missing {', '.join(missing)}"
            )
        for row in reader:
            if limit is not None and counts.rows >= limit:
                return
            try:
                at = parse_ts(row["ts"] or "")
            except ValueError:
                counts.unreadable += 1
                continue
            counts.rows += 1
            yield Reaction(at=at, user=row["user"] or "", emoji=row["emoji"] or "")


def amplified_users(user: str, amplify: int) -> list[str]:
    """The distinct user ids one recorded reaction stands for."""
    if amplify == 1:
        return [user]
    return [f"{user}.{i}" for i in range(amplify)]


def schedule(
    reactions: Iterable[Reaction],
    *,
    match_id: str,
    speed: float = 1.0,
    amplify: int = 1,
    duration_s: float | None = None,
    tick_s: float = 0.0,
) -> Iterator[ScheduledBatch]:
    """Groups reactions into batches due at the recorded pace divided by ``speed``.

    The first reaction is due at 0. Reactions due at the same moment go out
    together; with ``tick_s`` > 0, due times are rounded down to multiples of
    it, so fast replays send fewer, larger batches. Each reaction becomes
    ``amplify`` taps from distinct derived user ids. Batches due after
    ``duration_s`` are not produced. Reactions are expected in time order; one
    recorded earlier than its predecessor is due with it.
    """
    if speed <= 0:
        raise ValueError("speed must be positive")
    if amplify < 1:
        raise ValueError("amplify must be at least 1")
    if tick_s < 0:
        raise ValueError("tick_s must not be negative")

    start: dt.datetime | None = None
    due_s = 0.0
    taps: list[Tap] = []
    for reaction in reactions:
        if start is None:
            start = reaction.at
        offset_s = max(due_s, (reaction.at - start).total_seconds() / speed)
        if tick_s > 0:
            offset_s = max(due_s, offset_s // tick_s * tick_s)
        if duration_s is not None and offset_s > duration_s:
            break
        if taps and offset_s != due_s:
            yield ScheduledBatch(due_s, tuple(taps))
            taps = []
        due_s = offset_s
        taps.extend(
            Tap(match_id, user, reaction.emoji)
            for user in amplified_users(reaction.user, amplify)
        )
    if taps:
        yield ScheduledBatch(due_s, tuple(taps))


# Sending -----------------------------------------------------------------------


@dataclass
class ReplayReport:
    """What a replay achieved; ``refused`` counts by (field, reason)."""

    sent: int = 0
    accepted: int = 0
    refused: Counter[tuple[str, str]] = field(default_factory=Counter)
    failed: Counter[str] = field(default_factory=Counter)
    behind_s: float = 0.0

    @property
    def refused_total(self) -> int:
        return sum(self.refused.values())

    @property
    def failed_total(self) -> int:
        return sum(self.failed.values())

    def summary_lines(self) -> list[str]:
        """The final summary: totals, refusals per field, the top reasons."""
        lines = [
            f"summary sent={self.sent} accepted={self.accepted} "
            f"refused={self.refused_total} failed={self.failed_total}"
        ]
        by_field: Counter[str] = Counter()
        for (name, _), count in self.refused.items():
            by_field[name] += count
        for name, count in by_field.most_common():
            lines.append(f"refused field={name} count={count}")
        reasons = self.refused.most_common()
        for (name, reason), count in reasons[:MAX_REASON_LINES]:
            lines.append(f"  reason field={name} count={count} reason={reason!r}")
        if len(reasons) > MAX_REASON_LINES:
            lines.append(f"  ... {len(reasons) - MAX_REASON_LINES} more reasons")
        for error, count in self.failed.most_common():
            lines.append(f"failed error={error} count={count}")
        return lines


async def play(
    client: Client,
    batches: Iterable[ScheduledBatch],
    *,
    max_in_flight: int = 4,
    progress: Callable[[ReplayReport], None] | None = None,
    progress_every_s: float = 1.0,
    report: ReplayReport | None = None,
    on_result: Callable[[ScheduledBatch, BatchResult | None], None] | None = None,
) -> ReplayReport:
    """Sends each batch when it is due; returns the counts.

    Up to ``max_in_flight`` batches are on the wire at once so that a slow
    answer does not hold back the batches due after it. A batch that fails as
    a whole (server unreachable after retries) is counted in ``failed`` by
    error and the replay goes on. ``progress`` is called every
    ``progress_every_s`` seconds and once at the end. Counts go into
    ``report`` when given, so a caller can watch them grow; ``on_result``
    sees each batch with its result (None when it failed as a whole).
    """
    report = report if report is not None else ReplayReport()
    slots = asyncio.Semaphore(max_in_flight)
    sends: set[asyncio.Task[None]] = set()
    started = time.monotonic()
    last_progress = started

    async def send(batch: ScheduledBatch) -> None:
        try:
            result = await client.send_many(batch.taps)
        except EmoStreamError as exc:
            report.failed[type(exc).__name__] += len(batch.taps)
            log.warning("replay.batch_failed taps=%d error=%s", len(batch.taps), exc)
            if on_result is not None:
                on_result(batch, None)
        else:
            if on_result is not None:
                on_result(batch, result)
            report.accepted += result.accepted
            for rejection in result.rejected:
                report.refused[(rejection.field, rejection.reason)] += 1
        finally:
            slots.release()

    try:
        for batch in batches:
            wait_s = started + batch.offset_s - time.monotonic()
            if wait_s > 0:
                await asyncio.sleep(wait_s)
            await slots.acquire()
            report.behind_s = max(0.0, time.monotonic() - started - batch.offset_s)
            report.sent += len(batch.taps)
            task = asyncio.create_task(send(batch))
            sends.add(task)
            task.add_done_callback(sends.discard)

            if progress is not None and time.monotonic() - last_progress >= (
                progress_every_s
            ):
                last_progress = time.monotonic()
                progress(report)
        if sends:
            await asyncio.gather(*sends)
    finally:
        for task in sends:
            task.cancel()
    if progress is not None:
        progress(report)
    return report
