"""Ingest benchmarks: unary SendEmoji with ghz, and batched SendEmojis.

    python -m bench.ingest unary   [--processes 1,2] [--total N] [--rounds R]
    python -m bench.ingest batched [--ingest 1] [--clients 2] [--seconds S]

Unary: the same ghz scenario (bench/ghz/*.json) against the real handler and the
no-op handler behind the same Envoy, alternated so both see the same machine
load; also direct to the ingest process, without Envoy; then the same pair
with several ingest processes behind Envoy.

Batched: client processes send pre-serialized SendEmojis calls of
``batch_size`` taps through Envoy for a bounded time; the rate counted is taps
accepted and then confirmed in Kafka (the topic's end offsets grew by at least
that many). With py-spy installed, the first ingest process is sampled
meanwhile and the functions it spends its time in are listed.

Each run starts its own Kafka, ingest processes and Envoy in a temporary run
folder at ``--port-base`` and stops them at the end.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import multiprocessing
import os
import pathlib
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field

import grpc
from confluent_kafka import Consumer, TopicPartition
from google.protobuf.timestamp_pb2 import Timestamp

from deploy.envoy_config import NOOP_INGEST_CLUSTER
from deploy.layout import CACHE, EMOJI_TOPIC, MeshLayout
from deploy.mesh import Mesh
from emostream.v1 import emostream_pb2

GHZ = str(CACHE / "bin" / "ghz")
PY_SPY = pathlib.Path(sys.executable).parent / "py-spy"
SCENARIOS = pathlib.Path(__file__).resolve().parent / "ghz"
PORT_BASE = int(os.environ.get("EMOSTREAM_BENCH_PORT_BASE", 28000))
GHZ_TIMEOUT_S = 300.0


@contextmanager
def ingest_mesh(port_base: int, processes: int, *, noop: bool) -> Iterator[Mesh]:
    """Kafka, ``processes`` ingest processes (and the no-op one) and Envoy."""
    run_dir = pathlib.Path(tempfile.mkdtemp(prefix="emostream-bench-ingest-"))
    layout = MeshLayout(
        run_dir=run_dir,
        port_base=port_base,
        ingest_processes=processes,
        aggregator=False,
        fanout=False,
        noop_ingest=noop,
    )
    mesh = Mesh(layout)
    try:
        mesh.up()
        yield mesh
    finally:
        mesh.down()
        shutil.rmtree(run_dir, ignore_errors=True)


# Unary with ghz ------------------------------------------------------------------


@dataclass
class GhzResult:
    name: str
    rps: float
    p50_ms: float
    p99_ms: float
    ok: int
    errors: int


def run_ghz(name: str, scenario: str, host: str, total: int) -> GhzResult:
    """Runs one checked-in ghz scenario against ``host`` (given last, as ghz wants)."""
    out = subprocess.run(
        [
            GHZ, "--config", str(SCENARIOS / scenario),
            "--total", str(total), "--format", "json", host,
        ],
        check=True, capture_output=True, text=True, timeout=GHZ_TIMEOUT_S,
    ).stdout  # fmt: skip
    report = json.loads(out)
    codes = report.get("statusCodeDistribution", {})
    latencies = {
        d["percentage"]: d["latency"] for d in report.get("latencyDistribution") or []
    }
    return GhzResult(
        name=name,
        rps=report["rps"],
        p50_ms=latencies.get(50, float("nan")) / 1e6,
        p99_ms=latencies.get(99, float("nan")) / 1e6,
        ok=codes.get("OK", 0),
        errors=sum(n for code, n in codes.items() if code != "OK"),
    )


@dataclass
class UnaryResult:
    """The ghz rows, and the SendEmoji / no-op ratio through the same Envoy."""

    rows: list[GhzResult] = field(default_factory=list)
    # Real handler's calls/s over the no-op's, both through Envoy, by processes.
    ratios: dict[int, float] = field(default_factory=dict)
    # Calls Envoy routed to the no-op cluster: proves the header routing works.
    noop_routed: int = 0


def unary(
    port_base: int,
    processes: list[int],
    total: int,
    rounds: int,
    progress: bool = True,
) -> UnaryResult:
    """SendEmoji vs the no-op handler, through Envoy and direct, alternated.

    The first mesh (one ingest process) also measures both handlers direct;
    further meshes measure only the pair through Envoy.
    """
    result = UnaryResult()
    for count in processes:
        with ingest_mesh(port_base, count, noop=True) as mesh:
            lay = mesh.layout
            envoy = lay.envoy_address
            plan = [
                (f"SendEmoji via Envoy, {count} ingest", "send_emoji.json", envoy),
                (f"no-op via Envoy, {count} ingest", "send_emoji_noop.json", envoy),
            ]
            if count == processes[0]:
                plan += [
                    (
                        "SendEmoji direct, 1 ingest",
                        "send_emoji.json",
                        f"127.0.0.1:{lay.ingest_port(0)}",
                    ),
                    (
                        "no-op direct",
                        "send_emoji.json",
                        f"127.0.0.1:{lay.noop_ingest_port}",
                    ),
                ]
            runs: dict[str, list[GhzResult]] = {name: [] for name, _, _ in plan}
            run_ghz("warm-up", "send_emoji.json", envoy, max(1, total // 4))
            for _ in range(rounds):
                for name, scenario, host in plan:
                    runs[name].append(run_ghz(name, scenario, host, total))
            result.noop_routed += _envoy_counter(
                lay.envoy_admin_port, f"cluster.{NOOP_INGEST_CLUSTER}.upstream_rq_total"
            )
            medians = [_median(r) for r in runs.values()]
            result.ratios[count] = medians[0].rps / medians[1].rps
            result.rows += medians
            if progress:
                for row in medians:
                    print(f"  {ghz_line(row)}", flush=True)
    return result


def ghz_line(r: GhzResult) -> str:
    return (
        f"{r.name:32} {r.rps:8,.0f} calls/s  p50 {r.p50_ms:6.1f} ms  "
        f"p99 {r.p99_ms:6.1f} ms  ok {r.ok}  errors {r.errors}"
    )


def _median(results: list[GhzResult]) -> GhzResult:
    return GhzResult(
        name=results[0].name,
        rps=statistics.median(r.rps for r in results),
        p50_ms=statistics.median(r.p50_ms for r in results),
        p99_ms=statistics.median(r.p99_ms for r in results),
        ok=sum(r.ok for r in results),
        errors=sum(r.errors for r in results),
    )


def _envoy_counter(admin_port: int, name: str) -> int:
    url = f"http://127.0.0.1:{admin_port}/stats?format=json&filter=^{name}$"
    with urllib.request.urlopen(url, timeout=5) as reply:
        stats = json.load(reply).get("stats", [])
    return sum(int(s.get("value", 0)) for s in stats if s.get("name") == name)


# Batched -------------------------------------------------------------------------


def batch_request(match_id: str, worker: int, size: int) -> bytes:
    """One SendEmojis call of ``size`` valid taps, serialized once."""
    now = Timestamp()
    now.GetCurrentTime()
    emojis = ["🔥", "❤️", "😭", "👏", "😂"]
    request = emostream_pb2.SendEmojisRequest(
        emojis=[
            emostream_pb2.SendEmojiRequest(
                match_id=match_id,
                user_id=f"bench-{worker}-{i}",
                emoji_type=emojis[i % len(emojis)],
                timestamp=now,
            )
            for i in range(size)
        ]
    )
    return request.SerializeToString()


def _batch_worker(
    address: str,
    worker: int,
    seconds: float,
    concurrency: int,
    size: int,
    result: multiprocessing.Queue,  # type: ignore[type-arg]
) -> None:
    """One client process: ``concurrency`` calls in flight for ``seconds``."""

    async def run() -> tuple[int, Counter[str]]:
        failures: Counter[str] = Counter()
        async with grpc.aio.insecure_channel(address) as channel:
            call = channel.unary_unary(
                "/emostream.v1.EmojiIngest/SendEmojis",
                response_deserializer=emostream_pb2.SendEmojisResponse.FromString,
            )
            deadline = time.monotonic() + seconds
            body = batch_request("bench-batch", worker, size)

            async def loop() -> int:
                done = 0
                while time.monotonic() < deadline:
                    try:
                        reply = await call(body, timeout=30)
                    except grpc.aio.AioRpcError as exc:
                        failures[exc.code().name] += 1
                        await asyncio.sleep(0.05)
                        continue
                    done += reply.accepted
                return done

            accepted = await asyncio.gather(*(loop() for _ in range(concurrency)))
        return sum(accepted), failures

    started = time.time()
    accepted, failures = asyncio.run(run())
    result.put((accepted, started, time.time(), dict(failures)))


def topic_end(bootstrap: str) -> int:
    """The sum of the emoji topic's end offsets over its partitions."""
    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": "bench-offsets"})
    try:
        topic = consumer.list_topics(EMOJI_TOPIC, timeout=10).topics[EMOJI_TOPIC]
        ends = [
            consumer.get_watermark_offsets(TopicPartition(EMOJI_TOPIC, p), timeout=10)
            for p in topic.partitions
        ]
        return sum(high for _, high in ends)
    finally:
        consumer.close()


@dataclass
class BatchedResult:
    ingest_processes: int
    clients: int
    concurrency: int
    batch_size: int
    accepted: int
    confirmed: int
    seconds: float
    failures: dict[str, int]
    # Where the first ingest process spent its time (py-spy), if sampled.
    profile: list[tuple[str, float]] = field(default_factory=list)
    # CPU seconds per process name over the load, and the wall time.
    cpu_s: dict[str, float] = field(default_factory=dict)

    @property
    def per_s(self) -> float:
        return min(self.accepted, self.confirmed) / self.seconds


def batched(
    mesh: Mesh,
    seconds: float,
    clients: int,
    *,
    concurrency: int = 4,
    batch_size: int = 1_000,
    profile: bool = True,
) -> BatchedResult:
    """Taps per second accepted by SendEmojis through Envoy and confirmed in Kafka."""
    lay = mesh.layout
    before = topic_end(lay.kafka_bootstrap)
    pids = {
        name: pid
        for name in ["kafka", "envoy", *(f"ingest-{i}" for i in range(99))]
        if (pid := mesh.pid(name)) is not None
    }
    cpu_before = {name: cpu_s(pid) for name, pid in pids.items()}
    queue: multiprocessing.Queue[tuple[int, float, float, dict[str, int]]] = (
        multiprocessing.Queue()
    )
    workers = [
        multiprocessing.Process(
            target=_batch_worker,
            args=(lay.envoy_address, w, seconds, concurrency, batch_size, queue),
        )
        for w in range(clients)
    ]
    for w in workers:
        w.start()
    sampler = _start_profile(pids.get("ingest-0"), seconds) if profile else None
    answers = [queue.get(timeout=seconds + 120) for _ in workers]
    for w in workers:
        w.join(timeout=30)
    cpu_used = {name: cpu_s(pid) - cpu_before[name] for name, pid in pids.items()}
    accepted = sum(a[0] for a in answers)
    window_s = max(a[2] for a in answers) - min(a[1] for a in answers)
    failures: Counter[str] = Counter()
    for answer in answers:
        failures.update(answer[3])

    # Records reach Kafka within the producer's linger after the last call.
    deadline = time.monotonic() + 60
    confirmed = topic_end(lay.kafka_bootstrap) - before
    while confirmed < accepted and time.monotonic() < deadline:
        time.sleep(0.5)
        confirmed = topic_end(lay.kafka_bootstrap) - before
    return BatchedResult(
        ingest_processes=lay.ingest_processes,
        clients=clients,
        concurrency=concurrency,
        batch_size=batch_size,
        accepted=accepted,
        confirmed=confirmed,
        seconds=window_s,
        failures=dict(failures),
        profile=_finish_profile(sampler),
        cpu_s=cpu_used,
    )


def cpu_s(pid: int) -> float:
    """User plus system CPU seconds of one process so far."""
    try:
        stat = pathlib.Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return 0.0
    fields = stat.rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


# Sampling the ingest process -------------------------------------------------------


@dataclass
class _Sampler:
    process: subprocess.Popen[bytes]
    out: pathlib.Path


def _start_profile(pid: int | None, seconds: float) -> _Sampler | None:
    """py-spy on ``pid`` for most of the load, when py-spy is installed."""
    if pid is None or not PY_SPY.exists():
        return None
    out = pathlib.Path(tempfile.mkstemp(prefix="emostream-bench-spy-")[1])
    process = subprocess.Popen(
        [
            str(PY_SPY), "record", "--pid", str(pid), "--format", "raw",
            "--duration", str(max(1, int(seconds) - 2)), "--rate", "50",
            "--output", str(out), "--nonblocking", "--threads",
        ],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    return _Sampler(process, out)


def _finish_profile(sampler: _Sampler | None) -> list[tuple[str, float]]:
    if sampler is None:
        return []
    try:
        sampler.process.wait(timeout=60)
    except subprocess.TimeoutExpired:
        sampler.process.terminate()
        sampler.process.wait(timeout=10)
    try:
        return profile_parts(sampler.out.read_text())
    finally:
        sampler.out.unlink(missing_ok=True)


# Where the time goes: (label, frame marker); the first marker on a stack wins.
_PARTS = [
    ("validating taps (validation.py to_event)", "to_event ("),
    ("queueing records for librdkafka (produce_nowait)", "produce_nowait ("),
    ("prometheus counters", "prometheus_client"),
    ("delivery reports (kafka-poller thread)", "kafka-poller"),
    ("gRPC and asyncio on the main thread (includes parsing)", "MainThread"),
]


def profile_parts(collapsed: str) -> list[tuple[str, float]]:
    """Shares of the sampled busy time, by part of the ingest service.

    ``collapsed`` is py-spy's raw output with ``--threads``: one stack per
    line, frames joined by ";" (the thread first), a space, the sample count.
    """
    total = 0
    parts: Counter[str] = Counter()
    for line in collapsed.splitlines():
        stack, _, count_text = line.rpartition(" ")
        if not stack or not count_text.isdigit():
            continue
        count = int(count_text)
        total += count
        label = next((lbl for lbl, mark in _PARTS if mark in stack), "other threads")
        parts[label] += count
    if not total:
        return []
    return [(label, n / total) for label, n in parts.most_common()]


# Command line --------------------------------------------------------------------


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m bench.ingest", description=__doc__.splitlines()[0]
    )
    parser.add_argument("what", choices=["unary", "batched"])
    parser.add_argument("--port-base", type=int, default=PORT_BASE)
    parser.add_argument("--total", type=int, default=20_000, help="calls per ghz run")
    parser.add_argument("--rounds", type=int, default=2, help="alternations per pair")
    parser.add_argument("--processes", default="1,2", help="ingest process counts")
    parser.add_argument("--ingest", type=int, default=1, help="batched: processes")
    parser.add_argument("--clients", type=int, default=2, help="batched: clients")
    parser.add_argument("--concurrency", type=int, default=4, help="per client")
    parser.add_argument("--batch-size", type=int, default=1_000)
    parser.add_argument("--seconds", type=float, default=15.0)
    args = parser.parse_args(argv)
    if not 1 <= args.seconds <= 600 or not 1 <= args.total <= 1_000_000:
        parser.error("seconds must be within 1..600 and total within 1..1000000")

    if args.what == "unary":
        counts = [int(n) for n in args.processes.split(",") if n]
        result = unary(args.port_base, counts, args.total, args.rounds)
        for count, ratio in result.ratios.items():
            print(f"SendEmoji / no-op via Envoy, {count} ingest: {ratio:.2f}")
        print(f"calls Envoy routed to the no-op cluster: {result.noop_routed}")
        return 0

    with ingest_mesh(args.port_base, args.ingest, noop=False) as mesh:
        b = batched(
            mesh,
            args.seconds,
            args.clients,
            concurrency=args.concurrency,
            batch_size=args.batch_size,
        )
    print(
        f"{b.per_s:,.0f} taps/s confirmed in Kafka ({b.confirmed:,} confirmed of "
        f"{b.accepted:,} accepted in {b.seconds:.1f} s; failures {b.failures})"
    )
    print("CPU s: " + ", ".join(f"{k} {v:.1f}" for k, v in b.cpu_s.items()))
    for frame, share in b.profile:
        print(f"  {share:6.1%}  {frame}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
