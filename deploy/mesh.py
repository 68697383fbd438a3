"""Starts, watches and stops every process of the mesh on this machine.

    python -m deploy.mesh up       start everything, return when all are healthy
    python -m deploy.mesh down     stop everything started from the same run folder
    python -m deploy.mesh status   one line per process: pid, state, port, log
    python -m deploy.mesh logs     where each process logs

Each process runs in its own session with its own log in ``run/logs/`` and
its pid in ``run/pids/``, so ``down`` works from any shell. Tests drive the
same ``Mesh`` class with another run folder and port base.
"""

from __future__ import annotations

import argparse
import contextlib
import logging
import os
import pathlib
import signal
import subprocess
import sys
import time
import urllib.request
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import grpc
from confluent_kafka.admin import AdminClient, NewTopic
from grpc_health.v1 import health_pb2, health_pb2_grpc

from deploy.layout import CACHE, EMOJI_TOPIC, ROOT, SWARM_TOPIC, MeshLayout
from emostream.runtime.kafka_logs import LibrdkafkaLog

log = logging.getLogger("deploy.mesh")

PYTHON = sys.executable
ENVOY = str(pathlib.Path(sys.executable).parent / "envoy")
KAFKA_LIBS = CACHE / "kafka" / "libs"
KAFKA_LOG_CONFIG = ROOT / "deploy" / "kafka" / "log4j2.properties"


class MeshError(RuntimeError):
    """A process of the mesh did not start or did not become healthy."""


@dataclass(frozen=True)
class Process:
    """One process of the mesh: how to start it and how to know it is ready."""

    name: str
    argv: list[str]
    ready: Callable[[], bool]
    port: int | None = None
    env: dict[str, str] | None = None
    ready_timeout_s: float = 60.0
    # A marker the process writes when ready; removed before each start so
    # that one left by a killed run is not taken for readiness.
    ready_file: pathlib.Path | None = None
    # Writes what the process reads at start (its configuration); run by
    # start(), so that describing the mesh changes nothing on disk.
    prepare: Callable[[], None] | None = None


# Readiness probes --------------------------------------------------------------


def grpc_serving(address: str, service: str = "") -> Callable[[], bool]:
    def probe() -> bool:
        with grpc.insecure_channel(address) as channel:
            stub = health_pb2_grpc.HealthStub(channel)
            try:
                reply = stub.Check(
                    health_pb2.HealthCheckRequest(service=service), timeout=1.0
                )
            except grpc.RpcError:
                return False
            return reply.status == health_pb2.HealthCheckResponse.SERVING

    return probe


def kafka_answers(bootstrap: str) -> Callable[[], bool]:
    def probe() -> bool:
        # While Kafka boots, its connection-refused chatter goes to DEBUG.
        settings: dict[str, Any] = {
            "bootstrap.servers": bootstrap,
            "logger": LibrdkafkaLog("deploy.mesh.librdkafka"),
        }
        admin = AdminClient(settings)
        try:
            metadata = admin.list_topics(timeout=1.0)
        except Exception:
            return False
        return bool(metadata.brokers)

    return probe


def file_exists(path: pathlib.Path) -> Callable[[], bool]:
    return path.exists


def envoy_ready(admin_port: int, clusters: list[str]) -> Callable[[], bool]:
    """Envoy is live and every named cluster has at least one healthy host."""

    def probe() -> bool:
        try:
            with urllib.request.urlopen(
                f"http://127.0.0.1:{admin_port}/clusters", timeout=1.0
            ) as reply:
                text = reply.read().decode()
        except OSError:
            return False
        return all(_has_healthy(text, c) for c in clusters)

    return probe


def _has_healthy(clusters_text: str, cluster: str) -> bool:
    return any(
        line.startswith(f"{cluster}::") and line.endswith("::health_flags::healthy")
        for line in clusters_text.splitlines()
    )


# The mesh ----------------------------------------------------------------------


class Mesh:
    """Every process of one mesh, described by a ``MeshLayout``."""

    def __init__(self, layout: MeshLayout | None = None) -> None:
        self.layout = layout or MeshLayout()
        self.layout.logs_dir.mkdir(parents=True, exist_ok=True)
        self.layout.pids_dir.mkdir(parents=True, exist_ok=True)

    # What runs ------------------------------------------------------------------

    def processes(self) -> list[Process]:
        """All processes in start order; ``down`` stops them in reverse."""
        lay = self.layout
        procs = [self._kafka()]
        for i, port in enumerate(lay.ingest_ports):
            procs.append(
                Process(
                    name=f"ingest-{i}",
                    argv=[
                        PYTHON, "-m", "ingest_svc",
                        "--listen", f"127.0.0.1:{port}",
                        "--metrics-port", str(lay.ingest_metrics_port(i)),
                        "--kafka", lay.kafka_bootstrap,
                        "--topic", EMOJI_TOPIC,
                    ],
                    ready=grpc_serving(f"127.0.0.1:{port}"),
                    port=port,
                )
            )  # fmt: skip
        if lay.noop_ingest:
            procs.append(
                Process(
                    name="ingest-noop",
                    argv=[
                        PYTHON, "-m", "ingest_svc", "--noop",
                        "--listen", f"127.0.0.1:{lay.noop_ingest_port}",
                        "--kafka", lay.kafka_bootstrap,
                    ],
                    ready=grpc_serving(f"127.0.0.1:{lay.noop_ingest_port}"),
                    port=lay.noop_ingest_port,
                )
            )  # fmt: skip
        if lay.aggregator:
            procs.append(self._aggregator())
        if lay.fanout:
            procs.extend(self._fanout())
        procs.append(self._envoy())
        return procs

    def _kafka(self) -> Process:
        lay = self.layout
        return Process(
            name="kafka",
            argv=[
                "java", "-Xms256m", "-Xmx768m",
                f"-Dlog4j2.configurationFile={KAFKA_LOG_CONFIG}",
                f"-Djava.io.tmpdir={lay.run_dir / 'tmp'}",
                "-cp", f"{KAFKA_LIBS}/*",
                "kafka.Kafka", str(self._kafka_properties_path()),
            ],
            ready=kafka_answers(lay.kafka_bootstrap),
            prepare=self._write_kafka_properties,
            port=lay.kafka_port,
            ready_timeout_s=90.0,
        )  # fmt: skip

    def _aggregator(self) -> Process:
        lay = self.layout
        ready_file = lay.run_dir / "aggregator.ready"
        return Process(
            name="aggregator",
            argv=[
                PYTHON, "-m", "aggregator",
                "--kafka", lay.kafka_bootstrap,
                "--source-topic", EMOJI_TOPIC,
                "--swarm-topic", SWARM_TOPIC,
                "--checkpoint", str(lay.run_dir / "aggregator" / "checkpoint"),
                "--trigger-s", str(lay.trigger_s),
                "--factor", str(lay.factor),
                "--ui-port", str(lay.spark_ui_port),
                "--ready-file", str(ready_file),
            ],
            ready=file_exists(ready_file),
            ready_file=ready_file,
            port=lay.spark_ui_port,
            env={"SPARK_LOCAL_IP": "127.0.0.1", "PYSPARK_PYTHON": PYTHON},
            ready_timeout_s=120.0,
        )  # fmt: skip

    def _fanout(self) -> list[Process]:
        lay = self.layout
        main = f"127.0.0.1:{lay.main_publisher_port}"
        procs = [
            Process(
                name="publisher-main",
                argv=[
                    PYTHON, "-m", "publisher_svc", "main",
                    "--listen", main,
                    "--kafka", lay.kafka_bootstrap,
                    "--swarm-topic", SWARM_TOPIC,
                    "--state-dir", str(lay.run_dir / "publisher-main"),
                ],
                ready=grpc_serving(main),
                port=lay.main_publisher_port,
            )
        ]  # fmt: skip
        for c in range(lay.clusters):
            cluster = f"127.0.0.1:{lay.cluster_publisher_port(c)}"
            procs.append(
                Process(
                    name=f"publisher-cluster-{c}",
                    argv=[
                        PYTHON, "-m", "publisher_svc", "cluster",
                        "--listen", cluster,
                        "--upstream", main,
                        "--name", f"cluster-{c}",
                    ],
                    ready=grpc_serving(cluster),
                    port=lay.cluster_publisher_port(c),
                )
            )  # fmt: skip
            for i in range(lay.subscribers_per_cluster):
                port = lay.subscriber_port(c, i)
                procs.append(self.subscriber(c, i, upstream=cluster, port=port))
        return procs

    def subscriber(
        self, cluster: int, index: int, *, upstream: str, port: int
    ) -> Process:
        return Process(
            name=f"subscriber-{cluster}-{index}",
            argv=[
                PYTHON, "-m", "subscriber_svc",
                "--listen", f"127.0.0.1:{port}",
                "--upstream", upstream,
                "--name", f"subscriber-{cluster}-{index}",
            ],
            ready=grpc_serving(f"127.0.0.1:{port}"),
            port=port,
        )  # fmt: skip

    def _envoy(self) -> Process:
        from deploy import envoy_config

        lay = self.layout
        config_path = lay.run_dir / "envoy.yaml"

        def write_config() -> None:
            config_path.write_text(envoy_config.render(lay))

        return Process(
            name="envoy",
            argv=[
                ENVOY, "--disable-hot-restart",
                "-c", str(config_path),
                "--log-level", "warn",
                "--base-id", str(lay.port_base),
            ],
            ready=envoy_ready(lay.envoy_admin_port, envoy_config.clusters(lay)),
            prepare=write_config,
            port=lay.envoy_port,
        )  # fmt: skip

    def _kafka_properties_path(self) -> pathlib.Path:
        return self.layout.run_dir / "kafka" / "server.properties"

    def _write_kafka_properties(self) -> None:
        """Writes the broker's settings and formats its storage once."""
        lay = self.layout
        properties = self._kafka_properties_path()
        kafka_dir = properties.parent
        data_dir = kafka_dir / "data"
        kafka_dir.mkdir(parents=True, exist_ok=True)
        (lay.run_dir / "tmp").mkdir(parents=True, exist_ok=True)
        properties.write_text(
            "\n".join(
                [
                    "process.roles=broker,controller",
                    "node.id=1",
                    f"controller.quorum.voters=1@127.0.0.1:{lay.kafka_controller_port}",
                    f"listeners=PLAINTEXT://127.0.0.1:{lay.kafka_port},"
                    f"CONTROLLER://127.0.0.1:{lay.kafka_controller_port}",
                    f"advertised.listeners=PLAINTEXT://127.0.0.1:{lay.kafka_port}",
                    "controller.listener.names=CONTROLLER",
                    "inter.broker.listener.name=PLAINTEXT",
                    "listener.security.protocol.map="
                    "PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT",
                    f"log.dirs={data_dir}",
                    f"num.partitions={lay.partitions}",
                    "auto.create.topics.enable=false",
                    "offsets.topic.replication.factor=1",
                    "offsets.topic.num.partitions=6",
                    "transaction.state.log.replication.factor=1",
                    "transaction.state.log.min.isr=1",
                    "group.initial.rebalance.delay.ms=0",
                    "log.retention.hours=24",
                    "",
                ]
            )
        )
        if not (data_dir / "meta.properties").exists():
            cluster_id = uuid.uuid4().hex[:22]
            subprocess.run(
                [
                    "java", "-cp", f"{KAFKA_LIBS}/*",
                    f"-Dlog4j2.configurationFile={KAFKA_LOG_CONFIG}",
                    "kafka.tools.StorageTool", "format",
                    "-t", cluster_id, "-c", str(properties),
                ],
                check=True,
                stdout=subprocess.DEVNULL,
            )  # fmt: skip

    # Lifecycle ------------------------------------------------------------------

    def up(self) -> None:
        """Starts every process not already running, in order, waiting for each."""
        for proc in self.processes():
            if self.pid(proc.name) is None:
                self.start(proc)
            if proc.name == "kafka":
                self.create_topics()

    def down(self, timeout_s: float = 20.0) -> None:
        """Stops every process with a pid file, in reverse start order."""
        known = [p.name for p in self.processes()]
        recorded = sorted(p.stem for p in self.layout.pids_dir.glob("*.pid"))
        names = [n for n in reversed(known) if n in recorded]
        names += [n for n in recorded if n not in known]
        for name in names:
            self.stop(name, timeout_s=timeout_s)

    def start(self, proc: Process | str) -> int:
        """Starts one process and waits until it is ready; returns its pid."""
        if isinstance(proc, str):
            proc = self.process(proc)
        log_path = self.log_path(proc.name)
        env = {**os.environ, **(proc.env or {})}
        if proc.ready_file is not None:
            proc.ready_file.unlink(missing_ok=True)
        if proc.prepare is not None:
            proc.prepare()
        with open(log_path, "ab") as log_file:
            child = subprocess.Popen(
                proc.argv,
                stdout=log_file,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                cwd=ROOT,
                env=env,
                start_new_session=True,
            )
        self._pid_path(proc.name).write_text(str(child.pid))
        log.info(
            "process.started name=%s pid=%d log=%s", proc.name, child.pid, log_path
        )

        deadline = time.monotonic() + proc.ready_timeout_s
        while not proc.ready():
            if child.poll() is not None:
                raise MeshError(
                    f"{proc.name} exited with {child.returncode}; see {log_path}"
                )
            if time.monotonic() > deadline:
                raise MeshError(
                    f"{proc.name} not ready after {proc.ready_timeout_s} s; "
                    f"see {log_path}"
                )
            time.sleep(0.2)
        log.info("process.ready name=%s", proc.name)
        return child.pid

    def stop(
        self, name: str, *, timeout_s: float = 20.0, sig: int = signal.SIGTERM
    ) -> None:
        """Signals a process's whole session and waits for it to end.

        After ``timeout_s`` the session gets SIGKILL. ``sig=SIGKILL`` is a
        crash, as a test wants it.
        """
        pid = self.pid(name)
        if pid is None:
            self._pid_path(name).unlink(missing_ok=True)
            return
        with contextlib.suppress(ProcessLookupError):
            os.killpg(pid, sig)
        if not _wait_gone(pid, timeout_s):
            log.warning(
                "process.killed name=%s pid=%d after_s=%s", name, pid, timeout_s
            )
            with contextlib.suppress(ProcessLookupError):
                os.killpg(pid, signal.SIGKILL)
            _wait_gone(pid, 10.0)
        self._pid_path(name).unlink(missing_ok=True)
        log.info("process.stopped name=%s pid=%d", name, pid)

    def kill(self, name: str) -> None:
        """kill -9 of a process and its children, without any clean-up."""
        self.stop(name, sig=signal.SIGKILL, timeout_s=10.0)

    def create_topics(self) -> None:
        admin = AdminClient({"bootstrap.servers": self.layout.kafka_bootstrap})
        existing = admin.list_topics(timeout=10).topics
        wanted = [
            NewTopic(t, num_partitions=self.layout.partitions, replication_factor=1)
            for t in (EMOJI_TOPIC, SWARM_TOPIC)
            if t not in existing
        ]
        if not wanted:
            return
        for topic, fut in admin.create_topics(wanted).items():
            fut.result(timeout=30)
            log.info(
                "topic.created topic=%s partitions=%d", topic, self.layout.partitions
            )

    # Looking up -----------------------------------------------------------------

    def process(self, name: str) -> Process:
        for proc in self.processes():
            if proc.name == name:
                return proc
        raise KeyError(name)

    def pid(self, name: str) -> int | None:
        """The pid of a running process of this mesh, else None."""
        path = self._pid_path(name)
        try:
            pid = int(path.read_text())
        except (OSError, ValueError):
            return None
        return pid if _alive(pid) else None

    def log_path(self, name: str) -> pathlib.Path:
        return self.layout.logs_dir / f"{name}.log"

    def _pid_path(self, name: str) -> pathlib.Path:
        return self.layout.pids_dir / f"{name}.pid"


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    # A zombie child of this process counts as gone.
    try:
        waited, _ = os.waitpid(pid, os.WNOHANG)
    except ChildProcessError:
        return True
    return waited == 0


def _wait_gone(pid: int, timeout_s: float) -> bool:
    deadline = time.monotonic() + timeout_s
    while _alive(pid):
        if time.monotonic() > deadline:
            return False
        time.sleep(0.05)
    return True


# Command line ------------------------------------------------------------------


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m deploy.mesh", description=__doc__)
    parser.add_argument("command", choices=["up", "down", "status", "logs"])
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")

    mesh = Mesh()
    if args.command == "up":
        try:
            mesh.up()
        except MeshError as exc:
            log.error("mesh.failed error=%s (stopping what started)", exc)
            mesh.down()
            return 1
        print(describe(mesh))
    elif args.command == "down":
        mesh.down()
    elif args.command == "status":
        print(describe(mesh))
    else:
        for proc in mesh.processes():
            print(f"{proc.name:24} {mesh.log_path(proc.name)}")
    return 0


def describe(mesh: Mesh) -> str:
    """The map of the mesh: what runs where."""
    lines = [f"{'process':24} {'pid':>8}  {'listens on':22} log"]
    for proc in mesh.processes():
        pid = mesh.pid(proc.name)
        where = f"127.0.0.1:{proc.port}" if proc.port else "-"
        state = str(pid) if pid else "stopped"
        lines.append(
            f"{proc.name:24} {state:>8}  {where:22} {mesh.log_path(proc.name)}"
        )
    lines.append(
        f"{'envoy admin':24} {'':>8}  127.0.0.1:{mesh.layout.envoy_admin_port}"
    )
    return "\n".join(lines)


if __name__ == "__main__":
    sys.exit(main())
