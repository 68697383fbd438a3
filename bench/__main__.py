"""Runs the benchmarks against meshes it starts itself; writes docs/benchmarks.md.

    python -m bench [--only NAME[,NAME]] [--quick] [--port-base N] [--doc PATH]

Scenarios, in order (NAME in brackets):
  1. [ingest]     unary SendEmoji with ghz: real vs no-op handler through the
                  same Envoy, direct vs through Envoy, one vs two ingest processes
  2. [batched]    SendEmojis taps/s accepted and confirmed in Kafka
  3. [fanout]     bench.fanout for 1k, 5k, 10k and 20k viewers
  4. [latency]    tap-to-swarm latency at the viewers at 5,000 taps/s, whole mesh
  5. [aggregator] bench.aggregator_batches: Spark batch durations at 20,000 taps/s

Each scenario starts its own processes in its own temporary run folder at the
port base, prints its rows when it finishes and stops what it started. With
``--only`` the document keeps the other scenarios' blocks from their last run.
``--quick`` shrinks every scenario to a few minutes in all.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import re
import shlex
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from bench import ingest, latency
from bench.report import (
    DOC,
    Section,
    Target,
    load_average,
    machine,
    markdown_table,
    now_text,
    render,
)
from deploy.layout import ROOT

PORT_BASE = int(os.environ.get("EMOSTREAM_BENCH_PORT_BASE", 28000))
PYTHON = ".venv/bin/python"
# A scenario run as a child process is interrupted (it then stops its mesh)
# after this long, and killed a minute later.
CHILD_TIMEOUT_S = {"fanout": 600.0, "aggregator": 420.0}


@dataclass(frozen=True)
class Settings:
    """How big each scenario is: the defaults, or ``--quick``."""

    port_base: int
    quick: bool

    def rerun(self, name: str) -> str:
        flags = " --quick" if self.quick else ""
        if self.port_base != PORT_BASE:
            flags += f" --port-base {self.port_base}"
        return f"{PYTHON} -m bench --only {name}{flags}"


# 1. Unary ingest -------------------------------------------------------------------


def unary_ingest(s: Settings) -> Section:
    processes = [1] if s.quick else [1, 2]
    total, rounds = (4_000, 1) if s.quick else (10_000, 2)
    section = Section(
        name="ingest",
        title="1. Unary ingest with ghz: SendEmoji vs no-op, Envoy vs direct",
        commands=[
            s.rerun("ingest"),
            f"{PYTHON} -m bench.ingest unary --processes "
            f"{','.join(map(str, processes))} --total {total} --rounds {rounds} "
            f"--port-base {s.port_base}",
        ],
    )
    result = ingest.unary(s.port_base, processes, total, rounds)
    header = ["ghz scenario (bench/ghz/*.json)", "calls/s", "p50 ms", "p99 ms"]
    section.table = markdown_table(
        [*header, "OK", "errors"],
        [
            (r.name, f"{r.rps:,.0f}", f"{r.p50_ms:.1f}", f"{r.p99_ms:.1f}", r.ok,
             r.errors)
            for r in result.rows
        ],
    )  # fmt: skip
    ratios = ", ".join(
        f"{ratio:.2f} with {_count(count, 'ingest process', 'es')}"
        for count, ratio in result.ratios.items()
    )
    section.targets = [
        Target(
            f"SendEmoji / no-op calls/s through Envoy, "
            f"{_count(count, 'ingest process', 'es')}",
            ratio,
            UNARY_GOAL_RATIO,
            "x",
            at_least=True,
        )
        for count, ratio in result.ratios.items()
    ]
    section.notes = [
        f"The figure: SendEmoji calls/s over the no-op handler's, both behind the "
        f"same Envoy in the same run: **{ratios}**. The no-op handler answers "
        f"without validating or producing; the header `x-emostream-backend: noop` "
        f"routes to it (Envoy counted {result.noop_routed:,} calls on its "
        f"cluster). Each ghz run sends {total:,} calls at concurrency 50 over 2 "
        f"connections; the runs alternate so that real and no-op see the same "
        f"machine load, and each row is the median of {rounds} run(s) (OK and "
        f"errors are summed). ghz, Envoy and the servers share the 2 cores, so the "
        f"absolute calls/s say more about the machine than about the service; the "
        f"ratio is what carries over.",
    ]
    return section


UNARY_GOAL_RATIO = 0.9


def _count(n: int, noun: str, plural: str = "s") -> str:
    return f"{n} {noun}{plural if n != 1 else ''}"


# 2. Batched ingest -----------------------------------------------------------------

BATCHED_GOAL_PER_S = 100_000.0


def batched_ingest(s: Settings) -> Section:
    # (ingest processes, client processes)
    shapes = [(3, 3)] if s.quick else [(1, 2), (2, 3), (3, 3)]
    seconds = 8.0 if s.quick else 15.0
    section = Section(
        name="batched",
        title="2. Batched ingest: SendEmojis taps/s confirmed in Kafka",
        commands=[s.rerun("batched")]
        + [
            f"{PYTHON} -m bench.ingest batched --ingest {i} --clients {c} "
            f"--seconds {seconds:.0f} --port-base {s.port_base}"
            for i, c in shapes
        ],
    )
    results = []
    for processes, clients in shapes:
        with ingest.ingest_mesh(s.port_base, processes, noop=False) as mesh:
            b = ingest.batched(mesh, seconds, clients)
        results.append(b)
        print(
            f"  {processes} ingest, {clients} clients: {b.per_s:,.0f} taps/s "
            f"({b.confirmed:,} confirmed of {b.accepted:,} accepted)",
            flush=True,
        )

    def ingest_us_per_tap(b: ingest.BatchedResult) -> str:
        used = sum(v for k, v in b.cpu_s.items() if k.startswith("ingest-"))
        return f"{used / max(b.accepted, 1) * 1e6:.1f}"

    section.table = markdown_table(
        [
            "ingest processes", "client processes x calls in flight",
            "taps per call", "accepted", "confirmed in Kafka", "seconds",
            "taps/s", "ingest CPU µs per tap", "Kafka CPU s", "Envoy CPU s",
        ],
        [
            (
                b.ingest_processes, f"{b.clients} x {b.concurrency}", b.batch_size,
                f"{b.accepted:,}", f"{b.confirmed:,}", f"{b.seconds:.1f}",
                f"{b.per_s:,.0f}", ingest_us_per_tap(b),
                f"{b.cpu_s.get('kafka', 0):.1f}", f"{b.cpu_s.get('envoy', 0):.1f}",
            )
            for b in results
        ],
    )  # fmt: skip
    best = max(results, key=lambda b: b.per_s)
    section.targets = [
        Target(
            f"batched ingest, best shape ({best.ingest_processes} ingest, "
            f"{best.clients} clients)",
            best.per_s,
            BATCHED_GOAL_PER_S,
            "taps/s",
            at_least=True,
        )
    ]
    section.notes = [
        "Each client process keeps its calls in flight through Envoy, each call a "
        "pre-serialized SendEmojis of valid taps; a tap counts once the topic's "
        "end offsets have grown past it. Failures: "
        + ("; ".join(f"{b.failures}" for b in results if b.failures) or "none")
        + ".",
    ]
    profiled = next((b for b in results if b.profile), None)
    if profiled is not None:
        section.notes += [
            "",
            f"Where the first ingest process spent its busy time (py-spy, "
            f"{_count(profiled.ingest_processes, 'ingest process', 'es')}, "
            f"{_count(profiled.clients, 'client')}; shares of samples across its "
            f"threads):",
            "",
            *markdown_table(
                ["part", "share"],
                [(part, f"{share:.0%}") for part, share in profiled.profile],
            ),
        ]
    section.notes += ["", *_batched_reading(best)]
    return section


def _batched_reading(best: ingest.BatchedResult) -> list[str]:
    taps = max(best.accepted, 1)
    ingest_us = sum(v for k, v in best.cpu_s.items() if k.startswith("ingest-"))
    ingest_us = ingest_us / taps * 1e6
    others_us = (best.cpu_s.get("kafka", 0) + best.cpu_s.get("envoy", 0)) / taps * 1e6
    cores = BATCHED_GOAL_PER_S * (ingest_us + others_us) / 1e6
    return [
        f"Reading: the ingest service is CPU-bound in Python. Each tap costs "
        f"about {ingest_us:.0f} µs of ingest CPU (checking the ids with a regular "
        f"expression and the emoji with a dictionary lookup, building and "
        f"serializing the Kafka event, one librdkafka produce call; librdkafka "
        f"reports back only failed deliveries) and {others_us:.1f} µs of Kafka "
        f"and Envoy CPU, so "
        f"{BATCHED_GOAL_PER_S:,.0f} taps/s needs about {cores:.1f} of the 2 "
        f"cores before the clients take theirs: within reach only on an "
        f"otherwise idle machine. More ingest processes help only while a core "
        f"is idle.",
    ]


# 3 and 5. Scenarios owned by their own modules, run as child processes ----------


# librdkafka's own stderr lines, e.g. "%6|1796401242.964|BGQUEUE|rdkafka#...".
_LIBRDKAFKA_LINE = re.compile(r"^\s*%\d\|")


def run_child(name: str, argv: list[str], timeout_s: float) -> tuple[int, list[str]]:
    """Runs ``argv`` (``PYTHON`` is this interpreter) in the repository, echoing
    its output; SIGINT at the timeout, so that it stops its own mesh, and
    SIGKILL a minute later."""
    child = subprocess.Popen(
        [sys.executable, *argv[1:]] if argv[0] == PYTHON else argv,
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,
    )

    def interrupt() -> None:
        print(f"  {name}: over {timeout_s:.0f} s, interrupting", flush=True)
        with contextlib.suppress(ProcessLookupError):
            child.send_signal(signal.SIGINT)

    timer = threading.Timer(timeout_s, interrupt)
    timer.start()
    output = []
    try:
        assert child.stdout is not None
        for line in child.stdout:
            if _LIBRDKAFKA_LINE.match(line):
                continue
            output.append(line.rstrip("\n"))
            print(f"  {line.rstrip()}", flush=True)
        try:
            code = child.wait(timeout=60)
        except subprocess.TimeoutExpired:
            child.kill()
            code = child.wait()
    finally:
        timer.cancel()
    return code, output


FANOUT_GOALS = {
    "held_20k": 20_000.0,
    "p99_ms": 250.0,
    "kb_per_stream": 30.0,
    "deliveries_per_cpu_s": 25_000.0,
}


def fanout(s: Settings) -> Section:
    sizes = "1000,5000" if s.quick else "1000,5000,10000,20000"
    swarms = ["--swarms", "10"] if s.quick else []
    spread = [PYTHON, "-m", "bench.fanout", "--sizes", sizes, *swarms,
              "--port-base", str(s.port_base)]  # fmt: skip
    # The latency and cost targets are for one node holding 5,000 streams.
    one_node = [PYTHON, "-m", "bench.fanout", "--sizes", "5000", "--subscribers",
                "1", *swarms, "--port-base", str(s.port_base)]  # fmt: skip
    section = Section(
        name="fanout",
        title="3. Fan-out: viewer streams on the subscriber nodes",
        commands=[s.rerun("fanout"), shlex.join(spread), shlex.join(one_node)],
    )
    tables = []
    rows: list[dict[str, float]] = []
    codes = []
    for argv in (spread, one_node):
        code, output = run_child("fanout", argv, CHILD_TIMEOUT_S["fanout"])
        codes.append(code)
        table = _last_block(output, starts_with="viewers")
        tables += ["```", *(table or output[-20:]), "```", ""]
        rows += _fanout_rows(table)
    section.table = tables[:-1]

    held_20k = next((r["held"] for r in rows if r["viewers"] == 20_000), None)
    node_5k = next((r for r in rows if r["viewers"] == 5_000 and r["nodes"] == 1), None)
    section.targets = [
        Target("viewer streams held of 20,000", held_20k, FANOUT_GOALS["held_20k"],
               "streams", at_least=True),
        Target("broadcast to a 5,000-stream node, p99", _get(node_5k, "p99_ms"),
               FANOUT_GOALS["p99_ms"], "ms", at_least=False),
        Target("RSS per stream, 5,000-stream node", _get(node_5k, "kb_per_stream"),
               FANOUT_GOALS["kb_per_stream"], "KB", at_least=False),
        Target("deliveries per CPU-second, 5,000-stream node",
               _get(node_5k, "deliveries_per_cpu_s"),
               FANOUT_GOALS["deliveries_per_cpu_s"], "/s", at_least=True),
    ]  # fmt: skip
    section.notes = [
        "The tables are bench.fanout's own: per size, the streams held open, the "
        "broadcasts sent and how many reached every stream, the time from the "
        "main publisher's published_at to the last viewer's receipt (p50, p99), "
        "the subscriber nodes' RSS per stream and deliveries per CPU-second of "
        "the subscriber processes. The first spreads the viewers over two nodes; "
        "the second puts 5,000 on one node, which is what the targets are about. "
        "The viewers run in separate client processes on the same two cores.",
    ]
    for code in codes:
        if code != 0:
            section.notes.append(f"bench.fanout exited with status {code}.")
    return section


_FANOUT_COLUMNS = (
    "viewers", "nodes", "held", "broadcasts", "complete", "p50_ms", "p99_ms",
    "kb_per_stream", "deliveries_per_cpu_s",
)  # fmt: skip


def _fanout_rows(table: list[str]) -> list[dict[str, float]]:
    """The rows of bench.fanout's table, by column."""
    rows = []
    for line in table[1:]:
        fields = line.split()
        try:
            values = [float(f) for f in fields[: len(_FANOUT_COLUMNS)]]
        except ValueError:
            continue
        if len(values) == len(_FANOUT_COLUMNS):
            rows.append(dict(zip(_FANOUT_COLUMNS, values, strict=True)))
    return rows


def _get(row: dict[str, float] | None, key: str) -> float | None:
    return None if row is None else row[key]


def _last_block(output: list[str], *, starts_with: str) -> list[str]:
    """The lines from the last one starting with ``starts_with`` to the end."""
    starts = [
        i for i, line in enumerate(output) if line.strip().startswith(starts_with)
    ]
    return [line for line in output[starts[-1] :] if line.strip()] if starts else []


AGGREGATOR_GOAL_MS = 500.0
_TRIGGER_SUMMARY = re.compile(
    r"trigger_ms\s+p50=\s*(?P<p50>\d+) ms\s+p90=\s*(?P<p90>\d+) ms\s+"
    r"max=\s*(?P<max>\d+) ms"
)


def aggregator(s: Settings) -> Section:
    seconds = 30 if s.quick else 60
    argv = [
        PYTHON, "-m", "bench.aggregator_batches", "--rate", "20000",
        "--seconds", str(seconds), "--port-base", str(s.port_base),
    ]  # fmt: skip
    section = Section(
        name="aggregator",
        title="5. Aggregator batch durations at 20,000 taps/s",
        commands=[s.rerun("aggregator"), shlex.join(argv)],
    )
    code, output = run_child("aggregator", argv, CHILD_TIMEOUT_S["aggregator"])
    figures = next((m for line in output if (m := _TRIGGER_SUMMARY.search(line))), None)
    p90 = float(figures["p90"]) if figures else None
    section.targets = [
        Target(
            "aggregator batch time p90 (Spark trigger_ms) at 20,000 taps/s",
            p90,
            AGGREGATOR_GOAL_MS,
            "ms",
            at_least=False,
        )
    ]
    shown = [line for line in output if not line.startswith("producing")]
    section.table = ["```", *shown[-12:], "```"]
    section.notes = [
        "The lines are bench.aggregator_batches' own: Kafka and the aggregator "
        "alone, taps produced straight into the source topic at a steady rate, "
        "batched and compressed as the ingest service writes them; trigger_ms "
        "is Spark's time for the whole micro-batch, batch_ms the foreachBatch "
        "part (read, decode, aggregate, publish). Before the query starts, the "
        "aggregator runs 20 warm-up micro-batches on made-up taps from a topic "
        "of their own (--warm-up-rounds); the first 3 batches are left out.",
    ]
    if code != 0:
        section.notes.append(f"bench.aggregator_batches exited with status {code}.")
    return section


# 4. Latency ------------------------------------------------------------------------

P50_GOAL_S = 1.8
P99_GOAL_S = 2.8


def tap_to_swarm(s: Settings) -> Section:
    options = latency.LatencyOptions(
        port_base=s.port_base,
        seconds=20.0 if s.quick else 60.0,
        warm_up_s=5.0 if s.quick else 10.0,
    )
    section = Section(
        name="latency",
        title="4. Tap-to-swarm latency at the viewers, 5,000 taps/s, whole mesh",
        commands=[
            s.rerun("latency"),
            f"{PYTHON} -m bench.latency --rate {options.rate_per_s:.0f} "
            f"--seconds {options.seconds:.0f} --warm-up-s {options.warm_up_s:.0f} "
            f"--port-base {s.port_base}",
        ],
    )
    result = latency.run(options)
    for line in latency.lines(result):
        print(f"  {line}", flush=True)

    bare = result.floor(with_measured_parts=False)
    full = result.floor(with_measured_parts=True)
    pcts = latency.PERCENTS

    def cells(values: dict[int, float]) -> list[str]:
        return [f"{values[p]:.2f}" if p in values else "-" for p in pcts]

    section.table = markdown_table(
        ["tap to swarm, seconds", *(f"p{p}" for p in pcts)],
        [
            ["measured at the viewers", *cells(result.measured)],
            [
                f"floor: linger U(0, {result.linger_s:g}) + trigger wait "
                f"U(0, {result.trigger_s:g})",
                *cells(bare),
            ],
            ["floor + measured batch and fan-out times", *cells(full)],
        ],
    )
    section.targets = [
        Target("tap-to-swarm p50 at 5,000 taps/s", result.measured.get(50),
               P50_GOAL_S, "s", at_least=False),
        Target("tap-to-swarm p99 at 5,000 taps/s", result.measured.get(99),
               P99_GOAL_S, "s", at_least=False),
    ]  # fmt: skip
    section.notes = _latency_notes(result, full)
    return section


def _latency_notes(result: latency.LatencyResult, full: dict[int, float]) -> list[str]:
    o = result.options
    held = "held" if result.conservation_ok else "FAILED"
    notes = [
        f"A steady synthetic crowd of {o.rate_per_s:,.0f} taps/s over {o.matches} "
        f"matches for {o.seconds:.0f} s, sent through Envoy in 100 ms batches by "
        f"deploy/demo.py's play_crowd, with {o.viewers} viewers following the "
        f"matches through Envoy, after a warm-up crowd of {o.warm_up_s:.0f} s that "
        f"is not measured. Accepted {result.accepted:,} of {result.sent:,} taps "
        f"({result.accepted / o.seconds:,.0f}/s); the sender ended "
        f"{result.behind_s:.2f} s behind its schedule; conservation (every "
        f"viewer's raw counts add up to the accepted taps): {held}.",
        "",
        "Latency is taken at the viewers: each swarm carries its taps in 100 ms "
        "buckets of tap time, each bucket's taps count at its middle, weighted by "
        "taps, over every viewer.",
        "",
        f"The floor: a tap waits in the ingest producer until its batch leaves, "
        f"up to the {result.linger_s * 1000:.0f} ms linger (uniform), then in "
        f"Kafka for the aggregator's next trigger, 0 to {result.trigger_s:g} s "
        f"(uniform, independent; a batch that outlasts the trigger is followed "
        f"at once, so the wait then spans that batch's time), then for the "
        f"micro-batch to read, reduce and publish, then for the fan-out through "
        f"the tree. The sum of the two "
        f"uniform waits alone has p50 = (linger + trigger) / 2 and p99 = linger + "
        f"trigger - sqrt(0.02 x linger x trigger); the third row adds the batch "
        f"and fan-out times measured in the same run (their full spread, mixed).",
    ]
    if result.batch_s:
        batches = latency.spread_text(result.batch_s)
        notes += ["", f"Batches in the measured window, trigger to swarms out: "
                  f"{batches}."]  # fmt: skip
    if result.fanout_s:
        fanout = latency.spread_text(result.fanout_s)
        notes += ["", f"Fan-out, main publisher's published_at to an observer "
                  f"viewer through Envoy: {fanout}."]  # fmt: skip
    if 99 in result.measured and 99 in full:
        notes += [
            "",
            f"Measured minus this floor: {result.measured[50] - full[50]:+.2f} s "
            f"at p50, {result.measured[99] - full[99]:+.2f} s at p99. The floor "
            f"leaves out queueing in the ingest and client processes and the hop "
            f"from the aggregator through the swarm topic to the main publisher; "
            f"the 100 ms tap buckets blur each figure by up to 50 ms.",
        ]
    bare = result.floor(with_measured_parts=False)
    room_p50, room_p99 = P50_GOAL_S - bare[50], P99_GOAL_S - bare[99]
    notes += [
        "",
        f"What the targets leave for the batch and the fan-out together (taken "
        f"as fixed times, which shift every percentile alike): "
        f"{P50_GOAL_S:g} - {bare[50]:.2f} = {room_p50:.2f} s at p50 and "
        f"{P99_GOAL_S:g} - {bare[99]:.2f} = {room_p99:.2f} s at p99. So the p99 "
        f"target needs batches under the aggregator's own "
        f"{AGGREGATOR_GOAL_MS / 1000:g} s goal; the linger and the trigger "
        f"take the rest.",
    ]
    if result.problems:
        notes += ["", "Conservation problems:", *(f"- {p}" for p in result.problems)]
    return notes


# The run ---------------------------------------------------------------------------

SCENARIOS: dict[str, Callable[[Settings], Section]] = {
    "ingest": unary_ingest,
    "batched": batched_ingest,
    "fanout": fanout,
    "latency": tap_to_swarm,
    "aggregator": aggregator,
}

INTRO = [
    "Written by `make bench` (`.venv/bin/python -m bench`), which starts every "
    "process it measures itself, each scenario in its own temporary run folder "
    "at port base 28000, and stops them again. Clients, Envoy, the services, "
    "Kafka and Spark all share the machine below, so every figure includes "
    "their contention for its cores; other work on the machine at the time adds "
    "noise (see the load average of each scenario).",
    "",
    "```sh",
    "make bench                                       # every scenario, ~15 min",
    ".venv/bin/python -m bench --quick                # every scenario, a few min",
    ".venv/bin/python -m bench --only latency,fanout  # some; the rest is kept",
    ".venv/bin/python -m bench --help                 # the scenario names",
    "```",
    "",
]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m bench", description=__doc__.splitlines()[0]
    )
    parser.add_argument("--only", default="", help="comma list of scenario names")
    parser.add_argument("--quick", action="store_true", help="a few minutes in all")
    parser.add_argument("--port-base", type=int, default=PORT_BASE)
    parser.add_argument("--doc", default=str(DOC), help="the document to write")
    args = parser.parse_args(argv)
    names = [n for n in args.only.split(",") if n] or list(SCENARIOS)
    unknown = [n for n in names if n not in SCENARIOS]
    if unknown:
        parser.error(f"unknown scenario {unknown}; choose from {list(SCENARIOS)}")

    settings = Settings(port_base=args.port_base, quick=args.quick)
    machine_rows = machine()
    for what, value in machine_rows:
        print(f"{what:38} {value}")
    started = time.monotonic()
    sections: list[Section] = []
    for name in [n for n in SCENARIOS if n in names]:
        print(f"\n== {name} ({time.monotonic() - started:.0f} s in)", flush=True)
        begun, load = time.monotonic(), load_average()
        try:
            section = SCENARIOS[name](settings)
        except Exception as exc:  # one scenario failing must not lose the rest
            print(f"  {name} failed: {exc!r}", flush=True)
            section = Section(
                name=name,
                title=f"{name}: failed",
                commands=[settings.rerun(name)],
                notes=[f"The scenario failed: `{exc!r}`."],
            )
        section.measured_at, section.load_at_start = now_text(), load
        section.elapsed_s = time.monotonic() - begun
        for target in section.targets:
            print(f"  {target.line()}", flush=True)
        sections.append(section)

    doc = _write(args.doc, sections, machine_rows)
    print(f"\n== targets ({time.monotonic() - started:.0f} s in all)")
    for section in sections:
        for target in section.targets:
            print(f"  {target.line()}")
    print(f"\nwrote {doc}")
    return 0


def _write(
    path: str, sections: list[Section], machine_rows: list[tuple[str, str]]
) -> str:
    doc = Path(path)
    previous = doc.read_text() if doc.exists() else ""
    doc.parent.mkdir(parents=True, exist_ok=True)
    doc.write_text(
        render(
            sections,
            order=list(SCENARIOS),
            machine_rows=machine_rows,
            previous=previous,
            intro=INTRO,
        )
    )
    return str(doc)


if __name__ == "__main__":
    sys.exit(main())
