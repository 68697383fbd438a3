"""Fan-out benchmark: N viewer streams on the subscriber nodes, swarms through the tree.

    python -m bench.fanout --port-base B              N = 1000 and 5000
    python -m bench.fanout --port-base B --large      also N = 10000 and 20000
    python -m bench.fanout --port-base B --subscribers 1 --sizes 5000
                                                      5000 streams on one node

Starts its own Kafka, main publisher, one cluster publisher and subscriber
nodes (no aggregator, no Envoy) in a temporary run folder, opens N viewer
streams from separate client processes (spread evenly over the nodes),
produces SwarmRecords straight into the swarm topic and measures, per
broadcast, the time from the main publisher's published_at to the last
viewer's receipt. Also reported: the streams held open, the subscribers' RSS
per stream (VmRSS before and after the streams opened), deliveries per
CPU-second of the subscriber processes only, and the CPU seconds the
subscribers and the viewer clients spent on the measured broadcasts.
Every phase is bounded in time; the mesh is stopped at the end.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
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

from deploy.envoy_config import SUBSCRIBER_STREAMS_PER_CONNECTION
from deploy.layout import SWARM_TOPIC, MeshLayout
from deploy.mesh import Mesh
from emostream.v1 import emostream_pb2, internal_pb2

CLIENT_PROCESSES = 2
# As many streams share one connection as Envoy puts on one upstream
# connection to a node, so each client process holds one connection per node
# up to 5,000 streams, the way a node sees viewers that come through Envoy.
STREAMS_PER_CHANNEL = SUBSCRIBER_STREAMS_PER_CONNECTION
OPEN_TIMEOUT_S = 120.0
BROADCAST_TIMEOUT_S = 60.0
GC_THRESHOLDS = (50_000, 20, 100)


# Viewer clients (separate processes) ---------------------------------------

# Every viewer of a broadcast gets the same bytes, so a client keeps its tally
# per distinct payload and decodes each payload once: per message it only
# looks the bytes up and counts them, and stays cheap next to the server.
Tally = dict[bytes, list[float]]  # payload -> [count, newest receive time]


def viewer_client(
    conn: Connection, ports: list[int], match_id: str, n: int, first: int
) -> None:
    """Opens ``n`` streams and answers the parent's report and stop requests."""
    # Thousands of long-lived streams make every full collection slow; the
    # client allocates no cycles worth collecting often.
    gc.set_threshold(*GC_THRESHOLDS)
    asyncio.run(_viewer_client(conn, ports, match_id, n, first))


async def _viewer_client(
    conn: Connection, ports: list[int], match_id: str, n: int, first: int
) -> None:
    tally: Tally = {}
    failures = [0]
    channels = [
        grpc.aio.insecure_channel(
            f"127.0.0.1:{ports[i % len(ports)]}", options=[("emostream.bench", i)]
        )
        for i in range(max(len(ports), -(-n // STREAMS_PER_CHANNEL)))
    ]

    async def watch(index: int) -> None:
        # Viewers are spread over the nodes by their global index, whatever
        # the client process, so each node holds its share of every size.
        channel = channels[index % len(channels)]
        call = channel.unary_stream(
            "/emostream.v1.SwarmFeed/Subscribe",
            request_serializer=emostream_pb2.SubscribeRequest.SerializeToString,
            response_deserializer=None,
        )(
            emostream_pb2.SubscribeRequest(
                match_id=match_id, viewer_id=f"v{os.getpid()}-{index}"
            )
        )
        read = call.read
        clock = time.time
        eof = grpc.aio.EOF
        try:
            while (payload := await read()) is not eof:
                entry = tally.get(payload)
                if entry is None:
                    entry = tally[payload] = [0, 0.0]
                entry[0] += 1
                entry[1] = clock()
        except grpc.aio.AioRpcError:
            failures[0] += 1

    tasks = []
    for i in range(n):
        tasks.append(asyncio.create_task(watch(first + i)))
        if i % 200 == 199:
            await asyncio.sleep(0.05)
    loop = asyncio.get_running_loop()
    while True:
        request = await loop.run_in_executor(None, conn.recv)
        if request == "stop":
            break
        conn.send({"seqs": _by_seq(tally), "failed": failures[0]})
    for task in tasks:
        task.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)
    for channel in channels:
        await channel.close()
    conn.send("stopped")


def _by_seq(tally: Tally) -> dict[int, tuple[int, float, float]]:
    """seq -> (streams that got it, newest receive time, published_at)."""
    seqs: dict[int, tuple[int, float, float]] = {}
    for payload, (count, newest_s) in list(tally.items()):
        swarm = emostream_pb2.Swarm.FromString(payload)
        if swarm.notice != emostream_pb2.NOTICE_SWARM:
            continue
        published_s = swarm.published_at.seconds + swarm.published_at.nanos / 1e9
        for seq in range(swarm.first_seq or swarm.seq, swarm.seq + 1):
            had, had_newest, had_published = seqs.get(seq, (0, 0.0, 0.0))
            seqs[seq] = (
                had + int(count),
                max(had_newest, newest_s),
                max(had_published, published_s if seq == swarm.seq else 0.0),
            )
    return seqs


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
    nodes: int
    held: int
    broadcasts: int
    complete: int
    p50_ms: float
    p99_ms: float
    rss_per_stream_kb: float
    deliveries_per_cpu_s: float
    server_cpu_s: float
    client_cpu_s: float
    wall_s: float


def run_size(mesh: Mesh, n: int, options: argparse.Namespace) -> Result:
    lay = mesh.layout
    pids = [mesh.pid(name) for name in _subscriber_names(lay)]
    assert all(pids), "a subscriber node is not running"
    sub_pids = [p for p in pids if p is not None]
    match_id = f"bench-{n}-{uuid.uuid4().hex[:6]}"
    producer = Producer({"bootstrap.servers": lay.kafka_bootstrap, "linger.ms": 0})

    rss_before = sum(rss_kb(p) for p in sub_pids)
    clients = []
    first = 0
    for i in range(options.clients):
        share = n // options.clients + (i < n % options.clients)
        parent, child = mp.Pipe()
        proc = mp.Process(
            target=viewer_client,
            args=(child, lay.subscriber_ports, match_id, share, first),
        )
        proc.start()
        clients.append((proc, parent))
        first += share

    def report() -> tuple[dict[int, tuple[int, float, float]], int]:
        seqs: dict[int, tuple[int, float, float]] = {}
        failed = 0
        for _, conn in clients:
            conn.send("report")
            answer = conn.recv()
            failed += answer["failed"]
            for seq, (count, newest_s, published_s) in answer["seqs"].items():
                had, had_newest, had_published = seqs.get(seq, (0, 0.0, 0.0))
                seqs[seq] = (
                    had + count,
                    max(had_newest, newest_s),
                    max(had_published, published_s),
                )
        return seqs, failed

    batches = iter(range(1_000_000))

    def produce() -> None:
        batch_id = next(batches)
        record = internal_pb2.SwarmRecord(
            match_id=match_id, query_id="bench", batch_id=batch_id, total=batch_id
        )
        record.emojis.add(emoji="🔥", raw=batch_id, shown=1)
        producer.produce(SWARM_TOPIC, key=match_id, value=record.SerializeToString())
        producer.flush(5)

    # Warm-up swarms until every stream has one: every stream is registered.
    deadline = time.monotonic() + OPEN_TIMEOUT_S
    held = 0
    seqs: dict[int, tuple[int, float, float]] = {}
    while time.monotonic() < deadline:
        produce()
        time.sleep(2.0)
        seqs, failed = report()
        held = seqs[max(seqs)][0] if seqs else 0
        if held >= n or (failed and held + failed >= n):
            break
    time.sleep(1.0)
    rss_after = sum(rss_kb(p) for p in sub_pids)
    first_seq = max(seqs) + 1 if seqs else 1

    # The measured broadcasts, then at most BROADCAST_TIMEOUT_S for stragglers.
    cpu_before = sum(cpu_s(p) for p in sub_pids)
    client_cpu_before = sum(cpu_s(proc.pid) for proc, _ in clients if proc.pid)
    started_s = time.monotonic()
    for _ in range(options.swarms):
        produce()
        time.sleep(options.interval_s)
    last_seq = first_seq + options.swarms - 1
    deadline = time.monotonic() + BROADCAST_TIMEOUT_S
    while time.monotonic() < deadline:
        seqs, failed = report()
        counts = [seqs.get(s, (0, 0.0, 0.0))[0] for s in range(first_seq, last_seq + 1)]
        if all(count >= held for count in counts):
            break
        time.sleep(0.5)
    wall_s = time.monotonic() - started_s
    cpu_used = sum(cpu_s(p) for p in sub_pids) - cpu_before
    client_cpu = (
        sum(cpu_s(proc.pid) for proc, _ in clients if proc.pid) - client_cpu_before
    )

    latencies = []
    delivered = 0
    complete = 0
    for seq in range(first_seq, last_seq + 1):
        count, newest_s, published_s = seqs.get(seq, (0, 0.0, 0.0))
        delivered += count
        if count >= held and published_s:
            complete += 1
            latencies.append((newest_s - published_s) * 1000)
    for proc, conn in clients:
        conn.send("stop")
        if conn.poll(30):
            conn.recv()
        proc.join(10)
        if proc.is_alive():
            proc.kill()
    producer.flush(5)
    latencies.sort()
    return Result(
        viewers=n,
        nodes=len(sub_pids),
        held=held,
        broadcasts=options.swarms,
        complete=complete,
        p50_ms=statistics.median(latencies) if latencies else float("nan"),
        p99_ms=latencies[min(len(latencies) - 1, int(len(latencies) * 0.99))]
        if latencies
        else float("nan"),
        rss_per_stream_kb=(rss_after - rss_before) / max(held, 1),
        deliveries_per_cpu_s=delivered / cpu_used if cpu_used else float("nan"),
        server_cpu_s=cpu_used,
        client_cpu_s=client_cpu,
        wall_s=wall_s,
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
    parser = argparse.ArgumentParser(
        prog="python -m bench.fanout",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--large", action="store_true", help="add 10k and 20k")
    parser.add_argument("--sizes", default="", help="comma list, e.g. 1000,5000")
    parser.add_argument(
        "--subscribers", type=int, default=2, help="subscriber nodes (default 2)"
    )
    parser.add_argument(
        "--clients", type=int, default=2, help="viewer client processes (default 2)"
    )
    parser.add_argument(
        "--swarms", type=int, default=20, help="measured broadcasts per size"
    )
    parser.add_argument(
        "--interval-s",
        type=float,
        default=0.5,
        help="between measured broadcasts (default 0.5; the product sends one "
        "swarm per match every 2 s)",
    )
    parser.add_argument(
        "--port-base",
        type=int,
        default=int(os.environ.get("EMOSTREAM_BENCH_PORT_BASE", 24000)),
        help="the mesh's port base (EMOSTREAM_BENCH_PORT_BASE, default 24000)",
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
    print(_HEADER, flush=True)
    try:
        start_tree(mesh)
        for n in sizes:
            results.append(run_size(mesh, n, args))
            print(_row(results[-1]), flush=True)
    finally:
        mesh.down()
        shutil.rmtree(run_dir, ignore_errors=True)

    print(f"\ninterval {args.interval_s} s, {args.clients} client processes")
    print(_HEADER)
    for result in results:
        print(_row(result))
    return 0


_HEADER = (
    f"{'viewers':>8} {'nodes':>5} {'held':>7} {'bcasts':>6} {'complete':>8} "
    f"{'p50 ms':>8} {'p99 ms':>8} {'KB/stream':>9} {'deliv/cpu-s':>11} "
    f"{'server cpu':>10} {'client cpu':>10} {'wall s':>6}"
)


def _row(r: Result) -> str:
    return (
        f"{r.viewers:>8} {r.nodes:>5} {r.held:>7} {r.broadcasts:>6} "
        f"{r.complete:>8} {r.p50_ms:>8.0f} {r.p99_ms:>8.0f} "
        f"{r.rss_per_stream_kb:>9.1f} {r.deliveries_per_cpu_s:>11.0f} "
        f"{r.server_cpu_s:>10.1f} {r.client_cpu_s:>10.1f} {r.wall_s:>6.1f}"
    )


if __name__ == "__main__":
    sys.exit(main())
