"""Fan-out benchmark: N viewer streams on the subscriber nodes, swarms through the tree.

    python -m bench.fanout                 N = 1000 and 5000
    python -m bench.fanout --large         also N = 10000 and 20000

Starts its own Kafka, main publisher, one cluster publisher and subscriber
nodes (no aggregator, no Envoy) in a temporary run folder, opens N viewer
streams from separate client processes, produces SwarmRecords straight into
the swarm topic and measures, per broadcast, the time from the main
publisher's published_at to the last viewer's receipt. Also reported: the
streams held open, the subscribers' RSS per stream (VmRSS before and after
the streams opened) and deliveries per CPU-second of the subscribers.
Every phase is bounded in time; the mesh is stopped at the end.
"""

from __future__ import annotations

import argparse
import asyncio
import multiprocessing as mp
import os
import pathlib
import shutil
import statistics
import sys
import tempfile
import time
import uuid
from dataclasses import dataclass
from multiprocessing.connection import Connection

import grpc
from confluent_kafka import Producer

from deploy.layout import SWARM_TOPIC, MeshLayout
from deploy.mesh import Mesh
from emostream.v1 import emostream_pb2, internal_pb2

CLIENT_PROCESSES = 2
STREAMS_PER_CHANNEL = 500
OPEN_TIMEOUT_S = 120.0
BROADCAST_TIMEOUT_S = 60.0


# Viewer clients (separate processes) ---------------------------------------


def viewer_client(conn: Connection, ports: list[int], match_id: str, n: int) -> None:
    """Opens ``n`` streams and answers the parent's report and stop requests."""
    asyncio.run(_viewer_client(conn, ports, match_id, n))


async def _viewer_client(
    conn: Connection, ports: list[int], match_id: str, n: int
) -> None:
    received: dict[int, list[float]] = {}  # seq -> [count, newest receive time]
    published: dict[int, float] = {}
    failures = [0]
    channels = [
        grpc.aio.insecure_channel(
            f"127.0.0.1:{ports[i % len(ports)]}", options=[("emostream.bench", i)]
        )
        for i in range(max(len(ports), -(-n // STREAMS_PER_CHANNEL)))
    ]

    async def watch(index: int) -> None:
        channel = channels[index % len(channels)]
        call = channel.unary_stream(
            "/emostream.v1.SwarmFeed/Subscribe",
            request_serializer=emostream_pb2.SubscribeRequest.SerializeToString,
            response_deserializer=emostream_pb2.Swarm.FromString,
        )(
            emostream_pb2.SubscribeRequest(
                match_id=match_id, viewer_id=f"v{os.getpid()}-{index}"
            )
        )
        try:
            async for swarm in call:
                if swarm.notice != emostream_pb2.NOTICE_SWARM:
                    continue
                now = time.time()
                for seq in range(swarm.first_seq, swarm.seq + 1):
                    entry = received.setdefault(seq, [0, 0.0])
                    entry[0] += 1
                    entry[1] = max(entry[1], now)
                published.setdefault(
                    swarm.seq,
                    swarm.published_at.seconds + swarm.published_at.nanos / 1e9,
                )
        except grpc.aio.AioRpcError:
            failures[0] += 1

    tasks = []
    for i in range(n):
        tasks.append(asyncio.create_task(watch(i)))
        if i % 200 == 199:
            await asyncio.sleep(0.05)
    loop = asyncio.get_running_loop()
    while True:
        request = await loop.run_in_executor(None, conn.recv)
        if request == "stop":
            break
        conn.send({"received": received, "published": published, "failed": failures[0]})
    for task in tasks:
        task.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)
    for channel in channels:
        await channel.close()
    conn.send("stopped")


# Measuring the servers --------------------------------------------------------


def rss_kb(pid: int) -> int:
    for line in pathlib.Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    return 0


def cpu_s(pid: int) -> float:
    fields = pathlib.Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


@dataclass
class Result:
    viewers: int
    held: int
    broadcasts: int
    complete: int
    p50_ms: float
    p99_ms: float
    rss_per_stream_kb: float
    deliveries_per_cpu_s: float


def run_size(mesh: Mesh, n: int, swarms: int, interval_s: float) -> Result:
    lay = mesh.layout
    pids = [mesh.pid(name) for name in _subscriber_names(lay)]
    assert all(pids), "a subscriber node is not running"
    sub_pids = [p for p in pids if p is not None]
    match_id = f"bench-{n}-{uuid.uuid4().hex[:6]}"
    producer = Producer({"bootstrap.servers": lay.kafka_bootstrap, "linger.ms": 0})

    rss_before = sum(rss_kb(p) for p in sub_pids)
    clients = []
    per_client = [
        n // CLIENT_PROCESSES + (i < n % CLIENT_PROCESSES)
        for i in range(CLIENT_PROCESSES)
    ]
    for share in per_client:
        parent, child = mp.Pipe()
        proc = mp.Process(
            target=viewer_client, args=(child, lay.subscriber_ports, match_id, share)
        )
        proc.start()
        clients.append((proc, parent))

    def report() -> tuple[dict[int, list[float]], dict[int, float], int]:
        received: dict[int, list[float]] = {}
        published: dict[int, float] = {}
        failed = 0
        for _, conn in clients:
            conn.send("report")
            answer = conn.recv()
            failed += answer["failed"]
            published.update(answer["published"])
            for seq, (count, newest) in answer["received"].items():
                entry = received.setdefault(seq, [0, 0.0])
                entry[0] += count
                entry[1] = max(entry[1], newest)
        return received, published, failed

    batches = iter(range(1_000_000))

    def produce() -> None:
        batch_id = next(batches)
        record = internal_pb2.SwarmRecord(
            match_id=match_id, query_id="bench", batch_id=batch_id, total=batch_id
        )
        record.emojis.add(emoji="🔥", raw=batch_id, shown=1)
        producer.produce(SWARM_TOPIC, key=match_id, value=record.SerializeToString())
        producer.flush(5)

    # Warm-up swarm 1 until every stream has it: every stream is registered.
    deadline = time.monotonic() + OPEN_TIMEOUT_S
    held = 0
    while time.monotonic() < deadline:
        produce()
        time.sleep(2.0)
        received, _, failed = report()
        held = int(received[max(received)][0]) if received else 0
        if held >= n or (failed and held + failed >= n):
            break
    rss_after = sum(rss_kb(p) for p in sub_pids)
    first_seq = max(received) + 1 if received else 1

    cpu_before = sum(cpu_s(p) for p in sub_pids)
    for _ in range(swarms):
        produce()
        time.sleep(interval_s)
    last_seq = first_seq + swarms - 1
    deadline = time.monotonic() + BROADCAST_TIMEOUT_S
    while time.monotonic() < deadline:
        received, published, failed = report()
        if all(received.get(s, [0])[0] >= held for s in range(first_seq, last_seq + 1)):
            break
        time.sleep(0.5)
    cpu_used = sum(cpu_s(p) for p in sub_pids) - cpu_before

    latencies = []
    delivered = 0
    complete = 0
    for seq in range(first_seq, last_seq + 1):
        count, newest_s = received.get(seq, [0, 0.0])
        delivered += int(count)
        if count >= held and seq in published:
            complete += 1
            latencies.append((newest_s - published[seq]) * 1000)
    for proc, conn in clients:
        conn.send("stop")
        if conn.poll(30):
            conn.recv()
        proc.join(10)
        if proc.is_alive():
            proc.kill()
    latencies.sort()
    return Result(
        viewers=n,
        held=held,
        broadcasts=swarms,
        complete=complete,
        p50_ms=statistics.median(latencies) if latencies else float("nan"),
        p99_ms=latencies[min(len(latencies) - 1, int(len(latencies) * 0.99))]
        if latencies
        else float("nan"),
        rss_per_stream_kb=(rss_after - rss_before) / max(held, 1),
        deliveries_per_cpu_s=delivered / cpu_used if cpu_used else float("nan"),
    )


def _subscriber_names(lay: MeshLayout) -> list[str]:
    return [
        f"subscriber-{c}-{i}"
        for c in range(lay.clusters)
        for i in range(lay.subscribers_per_cluster)
    ]


def start_tree(mesh: Mesh) -> None:
    for proc in mesh.processes():
        if proc.name == "kafka":
            mesh.start(proc)
            mesh.create_topics()
        elif proc.name.startswith(("publisher-", "subscriber-")):
            mesh.start(proc)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.fanout", description=__doc__)
    parser.add_argument("--large", action="store_true", help="add 10k and 20k")
    parser.add_argument("--sizes", default="", help="comma list, e.g. 1000,5000")
    parser.add_argument("--subscribers", type=int, default=2)
    parser.add_argument("--swarms", type=int, default=20)
    parser.add_argument("--interval-s", type=float, default=0.5)
    parser.add_argument(
        "--port-base",
        type=int,
        default=int(os.environ.get("EMOSTREAM_BENCH_PORT_BASE", 24000)),
    )
    args = parser.parse_args(argv)
    sizes = [int(s) for s in args.sizes.split(",") if s] or [1000, 5000]
    if args.large:
        sizes += [10_000, 20_000]

    run_dir = pathlib.Path(tempfile.mkdtemp(prefix="emostream-bench-fanout-"))
    layout = MeshLayout(
        run_dir=run_dir,
        port_base=args.port_base,
        clusters=1,
        subscribers_per_cluster=args.subscribers,
        partitions=1,
        aggregator=False,
    )
    mesh = Mesh(layout)
    results = []
    try:
        start_tree(mesh)
        for n in sizes:
            results.append(run_size(mesh, n, args.swarms, args.interval_s))
            print(_row(results[-1]), flush=True)
    finally:
        mesh.down()
        shutil.rmtree(run_dir, ignore_errors=True)

    print()
    print(_HEADER)
    for result in results:
        print(_row(result))
    return 0


_HEADER = (
    f"{'viewers':>8} {'held':>7} {'bcasts':>6} {'complete':>8} {'p50 ms':>8} "
    f"{'p99 ms':>8} {'KB/stream':>9} {'deliv/cpu-s':>11}"
)


def _row(r: Result) -> str:
    return (
        f"{r.viewers:>8} {r.held:>7} {r.broadcasts:>6} {r.complete:>8} "
        f"{r.p50_ms:>8.0f} {r.p99_ms:>8.0f} {r.rss_per_stream_kb:>9.1f} "
        f"{r.deliveries_per_cpu_s:>11.0f}"
    )


if __name__ == "__main__":
    sys.exit(main())
