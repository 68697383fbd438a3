"""Aggregator benchmark: micro-batch durations under a steady tap rate.

    python -m bench.aggregator_batches [--rate 20000] [--seconds 40]

Starts Kafka and the aggregator alone (the mesh's own command line, in a
temporary run folder), produces pre-serialized EmojiEvents straight to the
source topic at a steady rate over a few matches and emojis for a bounded
time, batched and compressed as the ingest service writes them, then reads
the aggregator's log: Spark's time per batch (trigger_ms, from the query
progress) and the foreachBatch part of it (batch_ms: read from Kafka, decode,
aggregate, publish). The first batches after a start are left out of the
figures."""

from __future__ import annotations

import argparse
import pathlib
import re
import shutil
import statistics
import tempfile
import time
from dataclasses import dataclass

from confluent_kafka import Producer

from deploy.layout import EMOJI_TOPIC, MeshLayout
from deploy.mesh import Mesh
from emostream.v1 import internal_pb2
from ingest_svc.config import IngestConfig

PORT_BASE = 23000
MATCHES = [f"bench-match-{i}" for i in range(4)]
EMOJIS = ["❤️", "🔥", "😭", "😂", "👏", "🏏"]
TICK_S = 0.05
GOAL_MS = 500

_PROGRESS = re.compile(
    r"batch\.progress batch=(?P<batch>\d+) rows=(?P<rows>\d+) "
    r"trigger_ms=(?P<trigger_ms>\d+) offsets_ms=(?P<offsets_ms>\d+) "
    r"batch_ms=(?P<batch_ms>\d+) commit_ms=(?P<commit_ms>\d+)"
)


@dataclass(frozen=True)
class BatchTiming:
    batch: int
    rows: int
    trigger_ms: int
    offsets_ms: int
    batch_ms: int
    commit_ms: int

    def describe(self) -> str:
        return (
            f"batch {self.batch}: trigger_ms={self.trigger_ms} (offsets "
            f"{self.offsets_ms}, batch {self.batch_ms}, commit {self.commit_ms})"
        )


def events_for_tick(now_ms: int, count: int) -> list[bytes]:
    """``count`` taps spread over the matches and emojis, tapped ``now_ms``."""
    templates = []
    for i, match_id in enumerate(MATCHES):
        for j, emoji in enumerate(EMOJIS):
            event = internal_pb2.EmojiEvent(
                match_id=match_id, user_id=f"viewer-{i}-{j}", emoji_type=emoji
            )
            event.tapped_at.FromMilliseconds(now_ms)
            event.received_at.FromMilliseconds(now_ms)
            templates.append(event.SerializeToString())
    return [templates[k % len(templates)] for k in range(count)]


def produce_steadily(bootstrap: str, rate: int, seconds: float) -> int:
    """Produces ``rate`` taps a second for ``seconds``; returns how many."""
    # Batched and compressed as the ingest service's producer writes them: the
    # aggregator's reader decompresses every batch.
    ingest = IngestConfig()
    producer = Producer(
        {
            "bootstrap.servers": bootstrap,
            "linger.ms": ingest.linger_ms,
            "compression.type": ingest.compression,
            "acks": "1",
        }
    )
    per_tick = max(1, int(rate * TICK_S))
    sent = 0
    started = time.monotonic()
    next_tick = started
    while next_tick - started < seconds:
        for k, value in enumerate(
            events_for_tick(time.time_ns() // 1_000_000, per_tick)
        ):
            while True:
                try:
                    producer.produce(EMOJI_TOPIC, value, f"viewer-{k % 500}".encode())
                    break
                except BufferError:
                    producer.poll(0.01)
        sent += per_tick
        producer.poll(0)
        next_tick += TICK_S
        time.sleep(max(0.0, next_tick - time.monotonic()))
    remaining = producer.flush(30)
    if remaining:
        raise RuntimeError(f"{remaining} taps not acknowledged by Kafka")
    return sent


def read_timings(log_path: pathlib.Path) -> list[BatchTiming]:
    timings = []
    for line in log_path.read_text(errors="replace").splitlines():
        match = _PROGRESS.search(line)
        if match:
            timings.append(
                BatchTiming(
                    batch=int(match["batch"]),
                    rows=int(match["rows"]),
                    trigger_ms=int(match["trigger_ms"]),
                    offsets_ms=int(match["offsets_ms"]),
                    batch_ms=int(match["batch_ms"]),
                    commit_ms=int(match["commit_ms"]),
                )
            )
    return timings


def _summary(name: str, values: list[int]) -> str:
    ordered = sorted(values)
    p90 = ordered[min(len(ordered) - 1, int(len(ordered) * 0.9))]
    return (
        f"{name:12} p50={statistics.median(ordered):7.0f} ms  p90={p90:6d} ms  "
        f"max={ordered[-1]:6d} ms"
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.aggregator_batches")
    parser.add_argument("--rate", type=int, default=20_000, help="taps per second")
    parser.add_argument("--seconds", type=float, default=40.0, help="how long")
    parser.add_argument("--skip", type=int, default=3, help="first batches left out")
    parser.add_argument("--port-base", type=int, default=PORT_BASE)
    parser.add_argument("--keep", action="store_true", help="keep the run folder")
    args = parser.parse_args(argv)
    if not 1 <= args.rate <= 200_000 or not 1 <= args.seconds <= 600:
        parser.error("rate must be within 1..200000 and seconds within 1..600")

    run_dir = pathlib.Path(tempfile.mkdtemp(prefix="emostream-bench-aggregator-"))
    layout = MeshLayout(
        run_dir=run_dir, port_base=args.port_base, aggregator=True, fanout=False
    )
    mesh = Mesh(layout)
    try:
        mesh.start("kafka")
        mesh.create_topics()
        mesh.start("aggregator")
        print(f"producing {args.rate} taps/s for {args.seconds} s ...", flush=True)
        sent = produce_steadily(layout.kafka_bootstrap, args.rate, args.seconds)
        # Let the batches holding the last taps finish.
        time.sleep(3 * layout.trigger_s + 2)
        timings = read_timings(mesh.log_path("aggregator"))
    finally:
        mesh.stop("aggregator")
        mesh.stop("kafka")
        if not args.keep:
            shutil.rmtree(run_dir, ignore_errors=True)

    with_rows = [t for t in timings if t.rows > 0]
    measured = with_rows[args.skip :]
    counted = sum(t.rows for t in with_rows)
    print(f"sent={sent} counted={counted} batches_with_rows={len(with_rows)}")
    if not measured:
        print(f"no batches after the first {args.skip}")
        return 1
    left_out = ", ".join(str(t.trigger_ms) for t in with_rows[: args.skip])
    print(f"left out, the first {args.skip} batches: trigger_ms {left_out}")
    print(f"after them: {len(measured)} batches, rows "
          f"p50={statistics.median(t.rows for t in measured):.0f}")  # fmt: skip
    print(_summary("trigger_ms", [t.trigger_ms for t in measured]))
    print(_summary("batch_ms", [t.batch_ms for t in measured]))
    slow = [t for t in measured if t.trigger_ms > GOAL_MS]
    print(f"goal <= {GOAL_MS} ms per batch: {len(measured) - len(slow)} of "
          f"{len(measured)} batches met it")  # fmt: skip
    for timing in slow:
        print(f"  over the goal: {timing.describe()}")
    if args.keep:
        print(f"run folder kept: {run_dir}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
