"""Tap-to-swarm latency at the viewers, at a steady tap rate, on the whole mesh.

    python -m bench.latency [--rate 5000] [--seconds 60] [--warm-up-s 10]

Starts every process of the mesh (Kafka, the Spark aggregator, publishers,
subscriber nodes, ingest, Envoy) in a temporary run folder, plays a steady
synthetic crowd through Envoy with the demo's machinery (``play_crowd``: a
warm-up tap, viewer streams through Envoy, the crowd, the conservation check)
once unmeasured to warm up and once measured, and reports the latency from a
tap to the swarm that counts it, at the viewers: every swarm carries its taps
in 100 ms buckets of tap time.

Beside the measurement stands the floor that the design imposes. A tap waits
in the ingest producer for up to the linger (its batch leaves ``linger_ms``
after the batch's first record), then in Kafka for the aggregator's next
trigger (0 to ``trigger_s``), then for the batch (read, reduce, publish) and
the fan-out through the tree. With the first two uniform and independent,
and the last two as measured in the same run, ``floor_quantile`` gives the
percentiles no implementation of this design can beat.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import io
import os
import pathlib
import re
import shutil
import statistics
import sys
import tempfile
import time
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field

from deploy.demo import DemoOptions, Summary, play_crowd
from deploy.layout import MeshLayout
from deploy.mesh import Mesh
from emostream.client import Client, EmoStreamError
from ingest_svc.config import IngestConfig

PORT_BASE = int(os.environ.get("EMOSTREAM_BENCH_PORT_BASE", 28000))
PERCENTS = (50, 95, 99)

_PROGRESS = re.compile(r"batch\.progress (?P<fields>.*)")
_FIELD = re.compile(r"(\w+)=(\d+)\b")


# The floor -----------------------------------------------------------------------


def wait_cdf(s: float, linger_s: float, trigger_s: float) -> float:
    """P(L + W <= s) for L uniform on [0, linger_s], W uniform on [0, trigger_s]."""
    a, b = sorted((linger_s, trigger_s))
    if s <= 0:
        return 0.0
    if s >= a + b:
        return 1.0
    if a == 0:
        return s / b
    if s <= a:
        return s * s / (2 * a * b)
    if s <= b:
        return (2 * s - a) / (2 * b)
    return 1 - (a + b - s) ** 2 / (2 * a * b)


def floor_quantile(
    percent: float,
    linger_s: float,
    trigger_s: float,
    batch_s: Sequence[float] = (0.0,),
    fanout_s: Sequence[float] = (0.0,),
) -> float:
    """The ``percent`` percentile of the time from a tap to its swarm.

    That time is L + W + B + F. L, the producer linger, is uniform on
    [0, linger_s]. W, the wait for the next batch to start, is uniform over
    the cycle the tap lands in: ``trigger_s``, or a batch's time when it
    outlasts the trigger (the next batch then starts at once); a tap lands in
    a cycle with odds in proportion to its length. B, the time of the batch
    that takes the tap, and F, its fan-out, are drawn from ``batch_s`` and
    ``fanout_s``. Solved by bisection on that mixture.
    """
    if not 0 < percent < 100:
        raise ValueError("percent must be within (0, 100)")
    if not batch_s or not fanout_s:
        raise ValueError("batch_s and fanout_s must not be empty")
    cycles = [max(trigger_s, b) for b in _thin(batch_s, 30)]
    extras = _thin(
        [b + f for b in _thin(batch_s, 60) for f in _thin(fanout_s, 60)], 100
    )
    weight = sum(cycles) * len(extras)

    def share_by(s: float) -> float:
        return (
            sum(
                cycle * wait_cdf(s - x, linger_s, cycle)
                for cycle in cycles
                for x in extras
            )
            / weight
        )

    goal = percent / 100
    low, high = min(extras), max(extras) + max(cycles) + linger_s
    for _ in range(50):
        middle = (low + high) / 2
        if share_by(middle) < goal:
            low = middle
        else:
            high = middle
    return (low + high) / 2


def _thin(values: Sequence[float], most: int) -> list[float]:
    """At most ``most`` evenly spaced order statistics of ``values``."""
    ordered = sorted(values)
    if len(ordered) <= most:
        return ordered
    step = (len(ordered) - 1) / (most - 1)
    return [ordered[round(i * step)] for i in range(most)]


# The measurement -----------------------------------------------------------------


@dataclass(frozen=True)
class LatencyOptions:
    """What the latency run plays; every field is a command-line option."""

    port_base: int = PORT_BASE
    rate_per_s: float = 5_000.0
    seconds: float = 60.0
    warm_up_s: float = 10.0
    matches: int = 4
    viewers: int = 100

    def __post_init__(self) -> None:
        if not 1 <= self.rate_per_s <= 50_000:
            raise ValueError("rate_per_s must be within 1..50000")
        if not 5 <= self.seconds <= 600 or not 0 <= self.warm_up_s <= 120:
            raise ValueError("seconds must be within 5..600, warm_up_s 0..120")
        if not 1 <= self.matches <= self.viewers <= 5_000:
            raise ValueError("need 1 <= matches <= viewers <= 5000")

    def crowd(self, duration_s: float, viewers: int) -> DemoOptions:
        return DemoOptions(
            duration_s=duration_s,
            matches=self.matches,
            viewers=viewers,
            watch=0,
            crowd_rate_per_s=self.rate_per_s / self.matches,
            crowd_burst=0,
            settle_s=30.0,
        )


@dataclass
class LatencyResult:
    options: LatencyOptions
    linger_s: float
    trigger_s: float
    # Percentile -> seconds, tap to swarm at the viewers.
    measured: dict[int, float]
    accepted: int
    sent: int
    conservation_ok: bool
    problems: list[str]
    behind_s: float
    # Per batch with rows in the measured window: trigger start to swarm out.
    batch_s: list[float] = field(default_factory=list)
    # Per swarm at the observers: main publisher's published_at to receipt.
    fanout_s: list[float] = field(default_factory=list)

    def floor(self, *, with_measured_parts: bool) -> dict[int, float]:
        batch_s, fanout_s = [0.0], [0.0]
        if with_measured_parts and self.batch_s and self.fanout_s:
            batch_s, fanout_s = self.batch_s, self.fanout_s
        return {
            p: floor_quantile(p, self.linger_s, self.trigger_s, batch_s, fanout_s)
            for p in PERCENTS
        }


def batch_seconds(log_text: str) -> list[float]:
    """Per batch with rows: the time from its trigger until its swarms were out.

    That is Spark's offsets and addBatch phases (``offsets_ms + batch_ms``)
    when the aggregator logs them, else the whole ``trigger_ms``.
    """
    found = []
    for line in log_text.splitlines():
        match = _PROGRESS.search(line)
        if match is None:
            continue
        fields = {k: int(v) for k, v in _FIELD.findall(match["fields"])}
        if fields.get("rows", 0) <= 0:
            continue
        if "offsets_ms" in fields and "batch_ms" in fields:
            found.append((fields["offsets_ms"] + fields["batch_ms"]) / 1000)
        elif "trigger_ms" in fields:
            found.append(fields["trigger_ms"] / 1000)
    return found


async def observe(address: str, match_ids: list[str], delays_s: list[float]) -> None:
    """Follows each match once, recording published_at to receipt per swarm."""

    async def one(client: Client, match_id: str) -> None:
        viewer = f"bench-observer-{uuid.uuid4().hex[:6]}"
        async for swarm in client.subscribe(match_id, viewer_id=viewer):
            received_s = time.time()
            if swarm.HasField("published_at") and swarm.taps:
                delays_s.append(received_s - swarm.published_at.ToNanoseconds() / 1e9)

    async with Client(address) as client:
        await asyncio.gather(*(one(client, m) for m in match_ids))


async def _measure(
    mesh: Mesh, options: LatencyOptions
) -> tuple[Summary, list[float], int]:
    """The warm-up crowd, then the measured one; also where the aggregator's
    log stood when the measured crowd began."""
    address = mesh.layout.envoy_address
    quiet = io.StringIO()
    if options.warm_up_s > 0:
        warm = options.crowd(options.warm_up_s, viewers=options.matches)
        await play_crowd(warm, address, quiet, match_prefix=f"warm-{_tag()}")

    log_offset = mesh.log_path("aggregator").stat().st_size

    # play_crowd names its matches "<prefix>-m1", "<prefix>-m2", ...
    prefix = f"bench-{_tag()}"
    match_ids = [f"{prefix}-m{i + 1}" for i in range(options.matches)]
    delays_s: list[float] = []
    observer = asyncio.create_task(observe(address, match_ids, delays_s))
    try:
        summary = await play_crowd(
            options.crowd(options.seconds, options.viewers),
            address,
            quiet,
            match_prefix=prefix,
        )
    finally:
        observer.cancel()
        with contextlib.suppress(asyncio.CancelledError, EmoStreamError):
            await observer
    return summary, delays_s, log_offset


def _tag() -> str:
    return uuid.uuid4().hex[:6]


def run(options: LatencyOptions) -> LatencyResult:
    """Starts the whole mesh, warms it up, measures, stops it."""
    run_dir = pathlib.Path(tempfile.mkdtemp(prefix="emostream-bench-latency-"))
    layout = MeshLayout(run_dir=run_dir, port_base=options.port_base)
    mesh = Mesh(layout)
    try:
        mesh.up()
        summary, delays_s, log_offset = asyncio.run(_measure(mesh, options))
        with open(mesh.log_path("aggregator"), "rb") as aggregator_log:
            aggregator_log.seek(log_offset)
            measured_log = aggregator_log.read().decode(errors="replace")
    finally:
        mesh.down()
        shutil.rmtree(run_dir, ignore_errors=True)

    report = summary.report
    return LatencyResult(
        options=options,
        linger_s=_linger_s(),
        trigger_s=layout.trigger_s,
        measured=summary.latency_percentiles(),
        accepted=report.accepted,
        sent=report.sent,
        conservation_ok=summary.ok,
        problems=summary.problems[:5],
        behind_s=report.behind_s,
        batch_s=batch_seconds(measured_log),
        fanout_s=delays_s,
    )


def _linger_s() -> float:
    linger_ms = os.environ.get("EMOSTREAM_INGEST_LINGER_MS", IngestConfig.linger_ms)
    return int(linger_ms) / 1000


# Terminal ------------------------------------------------------------------------


def lines(result: LatencyResult) -> list[str]:
    """The result as plain lines, for the terminal."""
    o = result.options

    def pct(values: dict[int, float]) -> str:
        return "  ".join(f"p{p} {values[p]:.2f} s" for p in PERCENTS if p in values)

    out = [
        f"crowd: {result.accepted:,} taps accepted of {result.sent:,} in "
        f"{o.seconds:.0f} s ({result.accepted / o.seconds:,.0f}/s), "
        f"{o.viewers} viewers, {o.matches} matches",
        f"measured at viewers        {pct(result.measured)}",
        f"floor: linger + trigger    {pct(result.floor(with_measured_parts=False))}",
        f"floor + batch + fan-out    {pct(result.floor(with_measured_parts=True))}",
    ]
    if result.batch_s:
        out.append(f"batch (trigger to swarms out) {spread_text(result.batch_s)}")
    if result.fanout_s:
        out.append(f"fan-out (published to viewer) {spread_text(result.fanout_s)}")
    out.append(
        f"conservation: {'ok' if result.conservation_ok else 'FAILED'}"
        + "".join(f"\n  {p}" for p in result.problems)
    )
    return out


def spread_text(values: Sequence[float]) -> str:
    ordered = sorted(values)
    p90 = ordered[min(len(ordered) - 1, int(len(ordered) * 0.9))]
    return (
        f"p50 {statistics.median(ordered):.2f} s  p90 {p90:.2f} s  "
        f"max {ordered[-1]:.2f} s  (n={len(ordered)})"
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m bench.latency", description=__doc__.splitlines()[0]
    )
    d = LatencyOptions()
    parser.add_argument("--port-base", type=int, default=d.port_base)
    parser.add_argument("--rate", type=float, default=d.rate_per_s, help="taps/s")
    parser.add_argument("--seconds", type=float, default=d.seconds)
    parser.add_argument("--warm-up-s", type=float, default=d.warm_up_s)
    parser.add_argument("--matches", type=int, default=d.matches)
    parser.add_argument("--viewers", type=int, default=d.viewers)
    args = parser.parse_args(argv)
    try:
        options = LatencyOptions(
            port_base=args.port_base,
            rate_per_s=args.rate,
            seconds=args.seconds,
            warm_up_s=args.warm_up_s,
            matches=args.matches,
            viewers=args.viewers,
        )
    except ValueError as exc:
        parser.error(str(exc))
    for line in lines(run(options)):
        print(line)
    return 0


if __name__ == "__main__":
    sys.exit(main())
