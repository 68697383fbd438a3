"""Ingest benchmarks: unary SendEmoji with ghz, and batched SendEmojis.

    python -m bench.ingest [--seconds S] [--processes 1,2]

Unary: the same ghz scenario (bench/ghz/*.json) against the real handler and the
no-op handler behind the same Envoy, alternated so both see the same machine
load; also direct to the ingest process, without Envoy; and with one and with
several ingest processes behind Envoy.

Batched: client processes send SendEmojis of 1,000 taps for a bounded time; the
rate counted is taps accepted and then confirmed in Kafka (the topic's end
offsets grew by exactly that many).
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import pathlib
import statistics
import subprocess
import tempfile
import time
from dataclasses import dataclass

import grpc
from confluent_kafka import Consumer, TopicPartition
from google.protobuf.timestamp_pb2 import Timestamp

from deploy.layout import CACHE, EMOJI_TOPIC, MeshLayout
from deploy.mesh import Mesh
from emostream.v1 import emostream_pb2

GHZ = str(CACHE / "bin" / "ghz")
SCENARIOS = pathlib.Path(__file__).resolve().parent / "ghz"
PORT_BASE = 26080
BATCH_SIZE = 1_000


@dataclass
class GhzResult:
    name: str
    rps: float
    p50_ms: float
    p99_ms: float
    ok: int
    errors: int


def run_ghz(name: str, scenario: str, host: str, total: int) -> GhzResult:
    """Runs one checked-in ghz scenario against ``host``."""
    out = subprocess.run(
        [
            GHZ, "--config", str(SCENARIOS / scenario),
            "--host", host, "--total", str(total), "--format", "json",
        ],
        check=True, capture_output=True, text=True,
    ).stdout  # fmt: skip
    report = json.loads(out)
    codes = report.get("statusCodeDistribution", {})
    latencies = {d["percentage"]: d["latency"] for d in report["latencyDistribution"]}
    return GhzResult(
        name=name,
        rps=report["rps"],
        p50_ms=latencies[50] / 1e6,
        p99_ms=latencies[99] / 1e6,
        ok=codes.get("OK", 0),
        errors=sum(n for code, n in codes.items() if code != "OK"),
    )


def unary(layout: MeshLayout, total: int, rounds: int) -> list[GhzResult]:
    """SendEmoji vs the no-op handler, through Envoy and direct, alternated."""
    envoy = layout.envoy_address
    direct = f"127.0.0.1:{layout.ingest_port(0)}"
    noop_direct = f"127.0.0.1:{layout.noop_ingest_port}"
    n = layout.ingest_processes
    plan = [
        (f"SendEmoji via Envoy ({n} ingest)", "send_emoji.json", envoy),
        ("no-op via Envoy", "send_emoji_noop.json", envoy),
        ("SendEmoji direct (1 ingest)", "send_emoji.json", direct),
        ("no-op direct", "send_emoji.json", noop_direct),
    ]
    runs: dict[str, list[GhzResult]] = {name: [] for name, _, _ in plan}
    run_ghz("warm-up", "send_emoji.json", envoy, total // 4)
    for _ in range(rounds):
        for name, scenario, host in plan:
            runs[name].append(run_ghz(name, scenario, host, total))
    return [_median(results) for results in runs.values()]


def _median(results: list[GhzResult]) -> GhzResult:
    return GhzResult(
        name=results[0].name,
        rps=statistics.median(r.rps for r in results),
        p50_ms=statistics.median(r.p50_ms for r in results),
        p99_ms=statistics.median(r.p99_ms for r in results),
        ok=sum(r.ok for r in results),
        errors=sum(r.errors for r in results),
    )


# Batched ingest ----------------------------------------------------------------


def _batch_request(match_id: str, worker: int) -> bytes:
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
            for i in range(BATCH_SIZE)
        ]
    )
    return request.SerializeToString()


def _batch_worker(
    address: str,
    match_id: str,
    worker: int,
    seconds: float,
    concurrency: int,
    result: multiprocessing.Queue,
) -> None:  # type: ignore[type-arg]
    """One client process: ``concurrency`` calls in flight for ``seconds``."""
    import asyncio

    async def run() -> int:
        accepted = 0
        async with grpc.aio.insecure_channel(address) as channel:
            call = channel.unary_unary(
                "/emostream.v1.EmojiIngest/SendEmojis",
                response_deserializer=emostream_pb2.SendEmojisResponse.FromString,
            )
            deadline = time.monotonic() + seconds
            body = _batch_request(match_id, worker)

            async def loop() -> int:
                done = 0
                while time.monotonic() < deadline:
                    reply = await call(body, timeout=30)
                    done += reply.accepted
                return done

            results = await asyncio.gather(*(loop() for _ in range(concurrency)))
            accepted = sum(results)
        return accepted

    result.put(asyncio.run(run()))


def _topic_end(bootstrap: str) -> int:
    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": "bench-offsets"})
    try:
        topic = consumer.list_topics(EMOJI_TOPIC, timeout=10).topics[EMOJI_TOPIC]
        return sum(
            consumer.get_watermark_offsets(TopicPartition(EMOJI_TOPIC, p), timeout=10)[
                1
            ]
            for p in topic.partitions
        )
    finally:
        consumer.close()


def batched(layout: MeshLayout, seconds: float, processes: int) -> dict[str, float]:
    """Taps per second accepted by SendEmojis through Envoy and confirmed in Kafka."""
    before = _topic_end(layout.kafka_bootstrap)
    queue: multiprocessing.Queue[int] = multiprocessing.Queue()
    workers = [
        multiprocessing.Process(
            target=_batch_worker,
            args=(layout.envoy_address, "bench-batch", w, seconds, 4, queue),
        )
        for w in range(processes)
    ]
    started = time.monotonic()
    for w in workers:
        w.start()
    accepted = sum(queue.get(timeout=seconds + 120) for _ in workers)
    for w in workers:
        w.join(timeout=30)
    elapsed = time.monotonic() - started

    deadline = time.monotonic() + 60
    confirmed = _topic_end(layout.kafka_bootstrap) - before
    while confirmed < accepted and time.monotonic() < deadline:
        time.sleep(0.5)
        confirmed = _topic_end(layout.kafka_bootstrap) - before
    return {
        "accepted": accepted,
        "confirmed": confirmed,
        "seconds": elapsed,
        "per_s": confirmed / elapsed,
    }


def main(argv: list[str] | None = None) -> list[str]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--total", type=int, default=20_000, help="calls per ghz run")
    parser.add_argument("--rounds", type=int, default=2, help="alternations per pair")
    parser.add_argument("--processes", default="1,2", help="ingest process counts")
    parser.add_argument("--batch-seconds", type=float, default=15.0)
    parser.add_argument("--batch-clients", type=int, default=2)
    args = parser.parse_args(argv)

    lines = [
        "| scenario | calls/s | p50 ms | p99 ms | OK | errors |",
        "| --- | ---: | ---: | ---: | ---: | ---: |",
    ]
    batch_line = ""
    for count in [int(n) for n in args.processes.split(",")]:
        with tempfile.TemporaryDirectory(prefix="emostream-bench-") as run_dir:
            layout = MeshLayout(
                run_dir=pathlib.Path(run_dir),
                port_base=PORT_BASE,
                ingest_processes=count,
                aggregator=False,
                fanout=False,
                noop_ingest=True,
            )
            mesh = Mesh(layout)
            try:
                mesh.up()
                results = unary(layout, args.total, args.rounds)
                if count == 1:
                    real, noop = results[0], results[1]
                    lines_ratio = real.rps / noop.rps
                    print(f"SendEmoji / no-op through Envoy: {lines_ratio:.2f}")
                for r in results:
                    lines.append(
                        f"| {r.name} | {r.rps:,.0f} | {r.p50_ms:.1f} | {r.p99_ms:.1f} "
                        f"| {r.ok} | {r.errors} |"
                    )
                if count == max(int(n) for n in args.processes.split(",")):
                    b = batched(layout, args.batch_seconds, args.batch_clients)
                    batch_line = (
                        f"Batched SendEmojis through Envoy ({count} ingest, "
                        f"{args.batch_clients} client processes, {BATCH_SIZE} per "
                        f"call): {b['per_s']:,.0f} taps/s confirmed in Kafka "
                        f"({b['confirmed']:,} of {b['accepted']:,} accepted, "
                        f"{b['seconds']:.1f} s)"
                    )
            finally:
                mesh.down()
    lines += ["", batch_line]
    print("\n".join(lines))
    return lines


if __name__ == "__main__":
    main()
