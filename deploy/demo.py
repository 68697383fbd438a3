"""The main job: the whole mesh, a crowd played into it, the swarm shown live.

    python -m deploy.demo [--file CSV | --cricsheet FILE] [--duration S]
                          [--speed X] [--amplify K] [--matches N] [--viewers N]

1. Start every process of the mesh (Kafka, the Spark aggregator, the main and
   cluster publishers, the subscriber nodes, ingest, Envoy) and print the map.
2. Open viewer streams through Envoy, spread over the matches.
3. Play the crowd through Envoy with the SDK, several matches at once: a
   recorded reaction file (CSV with ts,user,emoji) at its pace times ``speed``,
   each reaction standing for ``amplify`` taps of distinct users; or, with no
   file, the synthetic crowd reacting to match events (invented, or the balls of
   a Cricsheet file).
4. Show a few viewers' swarms live, with progress.
5. Wait until the swarms have caught up, print the summary, check conservation
   (per match, the raw counts in the swarms add up to the accepted taps, and
   every viewer got every swarm of its match), stop the mesh.

The exit status is 0 only when the check holds.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import dataclasses
import logging
import math
import pathlib
import sys
import time
import uuid
from collections import Counter
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from typing import TextIO

from deploy.layout import MeshLayout
from deploy.mesh import Mesh, MeshError, describe
from emostream.cli import render_swarm
from emostream.client import BatchResult, Client, EmoStreamError, Swarm
from emostream.crowd import CrowdShape, match_night
from emostream.replay import (
    ReadStats,
    ReplayReport,
    ScheduledBatch,
    play,
    read_reactions,
    schedule,
)
from emostream.v1 import emostream_pb2

log = logging.getLogger("deploy.demo")


@dataclass(frozen=True)
class DemoOptions:
    """What the demo plays and how; every field is a command-line option."""

    # A recorded reaction file (CSV: ts,user,emoji); None plays the synthetic crowd.
    file: pathlib.Path | None = None
    # A Cricsheet ball-by-ball file (JSON or CSV) driving the synthetic crowd.
    cricsheet: pathlib.Path | None = None
    # Seconds of sending.
    duration_s: float = 30.0
    # Recorded seconds played per real second.
    speed: float = 1.0
    # Taps each recorded reaction stands for (recorded files only).
    amplify: int = 1
    matches: int = 3
    # Viewer streams, spread over the matches.
    viewers: int = 60
    # Viewers whose swarms are drawn in the terminal.
    watch: int = 2
    # Synthetic crowd: taps per second per match in the background.
    crowd_rate_per_s: float = 300.0
    # Synthetic crowd: extra taps after each six, four or wicket.
    crowd_burst: int = 3000
    # Seconds without a new swarm, after sending, before the demo gives up
    # waiting for the last ones.
    settle_s: float = 30.0
    # Seconds per ball of the synthetic match, and the seed of its events.
    ball_interval_s: float = 3.0
    seed: int = 2

    def __post_init__(self) -> None:
        if self.duration_s <= 0 or self.speed <= 0 or self.settle_s <= 0:
            raise ValueError("duration, speed and settle must be positive")
        if self.amplify < 1 or self.matches < 1 or self.viewers < 1:
            raise ValueError("amplify, matches and viewers must be at least 1")
        if self.file is not None and not self.file.is_file():
            raise ValueError(f"no such reaction file: {self.file}")
        if self.cricsheet is not None and not self.cricsheet.is_file():
            raise ValueError(f"no such Cricsheet file: {self.cricsheet}")


# What the viewers saw ------------------------------------------------------------


@dataclass
class ViewerTally:
    """Everything one viewer received, for the summary and the check."""

    viewer_id: str
    match_id: str
    # (first_seq, seq) of each swarm message, in arrival order.
    ranges: list[tuple[int, int]] = field(default_factory=list)
    raw: Counter[str] = field(default_factory=Counter)
    gaps: int = 0
    last: Swarm | None = None
    last_received_s: float = 0.0
    # (latency_s, taps) per tap bucket received.
    latencies: list[tuple[float, int]] = field(default_factory=list)

    def record(self, swarm: Swarm, received_s: float) -> None:
        if swarm.notice == emostream_pb2.NOTICE_HISTORY_GAP:
            self.gaps += 1
            return
        self.ranges.append((swarm.first_seq or swarm.seq, swarm.seq))
        for count in swarm.emojis:
            self.raw[count.emoji] += count.raw
        for bucket in swarm.taps:
            # A bucket covers 100 ms; its taps are taken at its middle.
            tapped_s = (bucket.start_unix_ms + 50) / 1000
            self.latencies.append((received_s - tapped_s, bucket.count))
        self.last = swarm
        self.last_received_s = received_s

    @property
    def total(self) -> int:
        return sum(self.raw.values())

    def missing(self, last_seq: int) -> list[int]:
        """Seqs in 1..last_seq this viewer did not get, or got twice."""
        seen: Counter[int] = Counter()
        for first, last in self.ranges:
            seen.update(range(first, last + 1))
        return [s for s in range(1, last_seq + 1) if seen[s] != 1]


async def follow(client: Client, tally: ViewerTally) -> None:
    """One viewer: follows its match until cancelled."""
    async for swarm in client.subscribe(tally.match_id, viewer_id=tally.viewer_id):
        tally.record(swarm, time.time())


# What is played ----------------------------------------------------------------


def plan_batches(
    options: DemoOptions, match_ids: list[str], stats: ReadStats
) -> Iterator[ScheduledBatch]:
    """The taps to send, as batches due at offsets from the start, all matches."""
    if options.file is not None:
        per_match = [
            schedule(
                read_reactions(options.file, stats=stats),
                match_id=match_id,
                speed=options.speed,
                amplify=options.amplify,
                duration_s=options.duration_s,
                tick_s=0.1,
            )
            for match_id in match_ids
        ]
        return _merge(per_match)

    shape = CrowdShape(
        viewers=10_000,
        base_rate_per_s=options.crowd_rate_per_s,
        burst_taps=options.crowd_burst,
    )
    _, batches = match_night(
        match_ids,
        duration_s=options.duration_s,
        speed=options.speed,
        shape=shape,
        cricsheet=options.cricsheet,
        ball_interval_s=options.ball_interval_s,
        seed=options.seed,
    )
    return batches


def _merge(streams: list[Iterator[ScheduledBatch]]) -> Iterator[ScheduledBatch]:
    """Interleaves per-match schedules by due time."""
    heads = [next(s, None) for s in streams]
    while any(h is not None for h in heads):
        i = min(
            (i for i, h in enumerate(heads) if h is not None),
            key=lambda i: heads[i].offset_s,  # type: ignore[union-attr]
        )
        yield heads[i]  # type: ignore[misc]
        heads[i] = next(streams[i], None)


# The summary -------------------------------------------------------------------


@dataclass
class Summary:
    """The demo's outcome; ``ok`` is the conservation check."""

    report: ReplayReport
    accepted_by_match: Counter[str]
    tallies: list[ViewerTally]
    unreadable_rows: int
    elapsed_s: float
    problems: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.problems

    def swarms_by_match(self) -> dict[str, int]:
        last: dict[str, int] = {}
        for tally in self.tallies:
            for _, seq in tally.ranges:
                last[tally.match_id] = max(last.get(tally.match_id, 0), seq)
        return last

    def latency_percentiles(self) -> dict[int, float]:
        samples = sorted(s for t in self.tallies for s in t.latencies)
        return weighted_percentiles(samples, (50, 95, 99))

    def lines(self) -> list[str]:
        report = self.report
        swarms = self.swarms_by_match()
        delivered = sum(len(t.ranges) for t in self.tallies)
        lines = [
            "",
            "summary",
            f"  emojis sent      {report.sent:>10,}",
            f"  accepted         {report.accepted:>10,}",
            f"  refused          {report.refused_total:>10,}",
            f"  failed           {report.failed_total:>10,}",
        ]
        for (field_name, reason), count in report.refused.most_common(5):
            lines.append(f"    {count:>8,} {field_name}: {reason}")
        if self.unreadable_rows:
            lines.append(f"  unreadable rows  {self.unreadable_rows:>10,}")
        lines += [
            f"  swarms produced  {sum(swarms.values()):>10,}",
            f"  swarms delivered {delivered:>10,}",
            f"  viewers          {len(self.tallies):>10,}",
        ]
        pct = self.latency_percentiles()
        if pct:
            lines.append(
                "  tap-to-swarm latency at the viewers: "
                + "  ".join(f"p{p} {v:.2f} s" for p, v in pct.items())
            )
        lines.append("  conservation (sum of raw counts in swarms = accepted taps):")
        for match_id in sorted(self.accepted_by_match):
            seen = max(
                (t.total for t in self.tallies if t.match_id == match_id), default=0
            )
            accepted = self.accepted_by_match[match_id]
            mark = "ok" if seen == accepted else "MISMATCH"
            lines.append(
                f"    {match_id:32} swarms {swarms.get(match_id, 0):>4}  "
                f"raw {seen:>9,}  accepted {accepted:>9,}  {mark}"
            )
        lines.append(
            f"  check: {'PASSED' if self.ok else 'FAILED'} in {self.elapsed_s:.1f} s"
        )
        lines += [f"    {p}" for p in self.problems]
        return lines


def weighted_percentiles(
    samples: list[tuple[float, int]], percents: Iterable[int]
) -> dict[int, float]:
    """Percentiles of values each counted ``weight`` times; samples sorted."""
    total = sum(w for _, w in samples)
    if total == 0:
        return {}
    result: dict[int, float] = {}
    for p in percents:
        rank = math.ceil(total * p / 100)
        running = 0
        for value, weight in samples:
            running += weight
            if running >= rank:
                result[p] = value
                break
    return result


def check(summary: Summary) -> list[str]:
    """What breaks conservation: per match and per viewer."""
    problems = []
    swarms = summary.swarms_by_match()
    for match_id, accepted in sorted(summary.accepted_by_match.items()):
        viewers = [t for t in summary.tallies if t.match_id == match_id]
        for tally in viewers:
            if tally.total != accepted:
                problems.append(
                    f"{tally.viewer_id}: raw {tally.total} != accepted {accepted} "
                    f"for {match_id}"
                )
            missing = tally.missing(swarms.get(match_id, 0))
            if missing or tally.gaps:
                problems.append(
                    f"{tally.viewer_id}: {len(missing)} swarms missing or repeated, "
                    f"{tally.gaps} history gaps"
                )
    return problems[:20]


# The terminal ------------------------------------------------------------------


MAX_KINDS_SHOWN = 8
PLAIN_PROGRESS_EVERY_S = 5.0


class LiveView:
    """Redraws the watched viewers' latest swarms and the progress line.

    On a terminal the block is redrawn in place; elsewhere (pipes, CI) each
    new swarm is printed once and progress every few seconds.
    """

    def __init__(self, out: TextIO, watched: list[ViewerTally]) -> None:
        self.out = out
        self.watched = watched
        self.redraw = out.isatty()
        self._drawn = 0
        self._printed: dict[str, float] = {}
        self._progress_at = 0.0

    def show(self, report: ReplayReport, elapsed_s: float, phase: str) -> None:
        progress = (
            f"[{phase} {elapsed_s:5.1f} s] sent {report.sent:,}  accepted "
            f"{report.accepted:,}  refused {report.refused_total:,}"
        )
        if not self.redraw:
            # Plain output (pipes, CI): each new swarm once, and the progress.
            for tally in self.watched:
                if tally.last and self._printed.get(tally.viewer_id) != (
                    tally.last_received_s
                ):
                    self._printed[tally.viewer_id] = tally.last_received_s
                    for line in self._block(tally):
                        print(line, file=self.out)
            if phase == "done" or elapsed_s - self._progress_at >= (
                PLAIN_PROGRESS_EVERY_S
            ):
                self._progress_at = elapsed_s
                print(progress, file=self.out, flush=True)
            return
        block = [progress]
        for tally in self.watched:
            block += self._block(tally) or [f"{tally.viewer_id}: waiting for swarms"]
        if self._drawn:
            self.out.write(f"\x1b[{self._drawn}F\x1b[J")
        self.out.write("\n".join(block) + "\n")
        self.out.flush()
        self._drawn = len(block)

    @staticmethod
    def _block(tally: ViewerTally) -> list[str]:
        if tally.last is None:
            return []
        lines = render_swarm(tally.last, received_s=tally.last_received_s, width=30)
        has_latency = lines[-1].startswith("  latency:")
        head = lines[0]
        kinds = lines[1:-1] if has_latency else lines[1:]
        tail = lines[-1:] if has_latency else []
        if len(kinds) > MAX_KINDS_SHOWN:
            more = len(kinds) - MAX_KINDS_SHOWN
            kinds = [*kinds[:MAX_KINDS_SHOWN], f"  ... {more} more kinds"]
        return [f"{tally.viewer_id} | {head}", *kinds, *tail]


# The run -----------------------------------------------------------------------


async def play_crowd(
    options: DemoOptions, address: str, out: TextIO, *, match_prefix: str
) -> Summary:
    """Steps 2 to 5 against a running mesh whose Envoy listens on ``address``."""
    match_ids = [f"{match_prefix}-m{i + 1}" for i in range(options.matches)]
    tallies = [
        ViewerTally(f"viewer-{i + 1}", match_ids[i % len(match_ids)])
        for i in range(options.viewers)
    ]
    view = LiveView(out, tallies[: options.watch])
    stats = ReadStats()
    started = time.monotonic()

    async with Client(address) as sender, Client(address) as watcher:
        print("warming up: one tap, waiting for its swarm...", file=out, flush=True)
        await warm_up(sender, watcher, f"{match_prefix}-warmup")
        started = time.monotonic()
        followers = [asyncio.create_task(follow(watcher, t)) for t in tallies]
        # Give the streams a moment to register before the first tap.
        await asyncio.sleep(1.0 + options.viewers / 1000)

        counts = MatchCounts()
        accepted_by_match = counts.accepted
        report = ReplayReport()
        play_task = asyncio.create_task(
            play(
                sender,
                plan_batches(options, match_ids, stats),
                max_in_flight=8,
                report=report,
                on_result=counts.on_result,
            )
        )
        while not play_task.done():
            await asyncio.sleep(0.5)
            view.show(report, time.monotonic() - started, "sending")
        report = play_task.result()

        # Wait while swarms keep coming; give up after settle_s without one.
        last_news = time.monotonic()
        delivered = _delivered(tallies)
        while not _caught_up(tallies, accepted_by_match):
            await asyncio.sleep(0.5)
            view.show(report, time.monotonic() - started, "settling")
            now_delivered = _delivered(tallies)
            if now_delivered != delivered:
                delivered, last_news = now_delivered, time.monotonic()
            elif time.monotonic() - last_news > options.settle_s:
                break
        # One more trigger so that a late extra swarm would be seen too.
        await asyncio.sleep(2.5)
        view.show(report, time.monotonic() - started, "done")

        for task in followers:
            task.cancel()
        for task in followers:
            with contextlib.suppress(asyncio.CancelledError, EmoStreamError):
                await task

    summary = Summary(
        report=report,
        accepted_by_match=accepted_by_match,
        tallies=tallies,
        unreadable_rows=stats.unreadable,
        elapsed_s=time.monotonic() - started,
    )
    summary.problems = check(summary)
    if counts.failed:
        summary.problems.insert(
            0, f"{counts.failed} taps failed to send: their fate is unknown"
        )
    return summary


class MatchCounts:
    """Taps sent, accepted and failed per match, from each batch's result."""

    def __init__(self) -> None:
        self.accepted: Counter[str] = Counter()
        self.failed = 0

    def on_result(self, batch: ScheduledBatch, result: BatchResult | None) -> None:
        if result is None:
            self.failed += len(batch.taps)
            return
        refused = {r.index for r in result.rejected}
        for index, tap in enumerate(batch.taps):
            if index not in refused:
                self.accepted[tap.match_id] += 1


async def warm_up(sender: Client, watcher: Client, match_id: str) -> None:
    """Sends one tap and waits for its swarm, so that the Spark job's first,
    slow micro-batches are behind us before anything is measured."""
    taps = watcher.subscribe(match_id, viewer_id="warm-up")
    first = asyncio.ensure_future(anext(taps))
    await asyncio.sleep(1.0)
    await sender.send(match_id, "warm-up", "👋")
    try:
        await asyncio.wait_for(first, timeout=120)
    finally:
        await taps.aclose()  # type: ignore[attr-defined]


def _delivered(tallies: list[ViewerTally]) -> int:
    return sum(len(t.ranges) for t in tallies)


def _caught_up(tallies: list[ViewerTally], accepted: Counter[str]) -> bool:
    return all(t.total >= accepted[t.match_id] for t in tallies)


def run(
    options: DemoOptions, out: TextIO = sys.stdout, mesh: Mesh | None = None
) -> int:
    """The whole demo; returns the exit status (0 when the check holds)."""
    own_mesh = mesh is None
    the_mesh = mesh or Mesh(MeshLayout())
    try:
        if own_mesh:
            print(
                "starting the mesh (Kafka, Spark, publishers, subscribers, "
                "ingest, Envoy)...",
                file=out,
                flush=True,
            )
            the_mesh.up()
        print(describe(the_mesh), file=out, flush=True)
        summary = asyncio.run(
            play_crowd(
                options,
                the_mesh.layout.envoy_address,
                out,
                match_prefix=f"demo-{uuid.uuid4().hex[:6]}",
            )
        )
        for line in summary.lines():
            print(line, file=out)
        return 0 if summary.ok else 1
    except MeshError as exc:
        print(f"the mesh did not start: {exc}", file=out)
        return 2
    finally:
        if own_mesh:
            print("stopping the mesh...", file=out, flush=True)
            the_mesh.down()


def parse_options(argv: list[str] | None) -> DemoOptions:
    parser = argparse.ArgumentParser(
        prog="make demo ARGS=...", description=__doc__.splitlines()[0]
    )
    defaults = DemoOptions()
    parser.add_argument(
        "--file", type=pathlib.Path, help="reaction CSV (ts,user,emoji)"
    )
    parser.add_argument("--cricsheet", type=pathlib.Path, help="Cricsheet JSON or CSV")
    parser.add_argument(
        "--duration", type=float, default=defaults.duration_s, help="seconds of sending"
    )
    parser.add_argument(
        "--speed",
        type=float,
        default=defaults.speed,
        help="recorded seconds per real second",
    )
    parser.add_argument(
        "--amplify",
        type=int,
        default=defaults.amplify,
        help="taps per recorded reaction",
    )
    parser.add_argument("--matches", type=int, default=defaults.matches)
    parser.add_argument("--viewers", type=int, default=defaults.viewers)
    parser.add_argument(
        "--watch",
        type=int,
        default=defaults.watch,
        help="viewers drawn in the terminal",
    )
    parser.add_argument(
        "--rate",
        type=float,
        default=defaults.crowd_rate_per_s,
        help="synthetic crowd: background taps/s per match",
    )
    parser.add_argument(
        "--ball-interval",
        type=float,
        default=defaults.ball_interval_s,
        help="synthetic crowd: seconds per ball",
    )
    parser.add_argument(
        "--seed",
        type=int,
        default=defaults.seed,
        help="synthetic crowd: seed of the events and taps",
    )
    parser.add_argument(
        "--settle",
        type=float,
        default=defaults.settle_s,
        help="seconds without a new swarm before giving up waiting",
    )
    args = parser.parse_args(argv)
    return dataclasses.replace(
        defaults,
        file=args.file,
        cricsheet=args.cricsheet,
        duration_s=args.duration,
        speed=args.speed,
        amplify=args.amplify,
        matches=args.matches,
        viewers=args.viewers,
        watch=args.watch,
        crowd_rate_per_s=args.rate,
        ball_interval_s=args.ball_interval,
        seed=args.seed,
        settle_s=args.settle,
    )  # fmt: skip


def main(argv: list[str] | None = None) -> int:
    logging.basicConfig(level=logging.WARNING, format="%(message)s")
    try:
        options = parse_options(argv)
    except ValueError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    return run(options)


if __name__ == "__main__":
    sys.exit(main())
