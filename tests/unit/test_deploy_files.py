"""The multi-host files agree with the mesh that deploy/mesh.py runs locally.

deploy/compose.yaml and deploy/k8s/*.yaml are never run here; these tests
parse them and compare every role's command line with the one mesh.py uses.
"""

from __future__ import annotations

import json
import pathlib
import re
import shlex
from typing import Any
from xml.etree import ElementTree

import pytest
import yaml

from deploy import envoy_config
from deploy.layout import ROOT, MeshLayout
from deploy.mesh import Mesh, Process

COMPOSE = ROOT / "deploy" / "compose.yaml"
K8S = sorted((ROOT / "deploy" / "k8s").glob("*.yaml"))

# Flags that only the local supervisor needs.
LOCAL_ONLY_FLAGS = {"--ready-file"}
# Flags whose values are paths or names that differ by design between hosts.
PER_HOST_FLAGS = {"--name", "--state-dir", "--checkpoint"}

PYTHON_ROLES = [
    "aggregator",
    "publisher-main",
    "publisher-cluster-0",
    "publisher-cluster-1",
    "subscribers-0",
    "subscribers-1",
    "ingest",
]
ROLES = ["kafka", *PYTHON_ROLES, "envoy"]


@pytest.fixture(scope="module")
def layout(tmp_path_factory: pytest.TempPathFactory) -> MeshLayout:
    return MeshLayout(
        run_dir=tmp_path_factory.mktemp("run"), **envoy_config.MULTI_HOST_LAYOUT_ARGS
    )


@pytest.fixture(scope="module")
def mesh_argv(layout: MeshLayout) -> dict[str, list[str]]:
    """The local command line of each role, keyed by its multi-host name.

    On many hosts every subscriber listens on the first subscriber port, so
    the local subscriber of cluster c is built with that port.
    """
    with pytest.MonkeyPatch.context() as patch:
        # Kafka's start formats a data folder with java; only argv matters.
        patch.setattr(
            Mesh,
            "_kafka",
            lambda self: Process(name="kafka", argv=["java"], ready=lambda: True),
        )
        mesh = Mesh(layout)
        processes = {p.name: p.argv for p in mesh.processes()}
    return {
        "aggregator": processes["aggregator"],
        "publisher-main": processes["publisher-main"],
        **{
            f"publisher-cluster-{c}": processes[f"publisher-cluster-{c}"]
            for c in range(layout.clusters)
        },
        **{
            f"subscribers-{c}": mesh.subscriber(
                c,
                0,
                upstream=f"127.0.0.1:{layout.cluster_publisher_port(c)}",
                port=layout.subscriber_port(0, 0),
            ).argv
            for c in range(layout.clusters)
        },
        "ingest": processes["ingest-0"],
    }


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    parsed: dict[str, Any] = yaml.safe_load(COMPOSE.read_text())
    return parsed


@pytest.fixture(scope="module")
def k8s() -> list[dict[str, Any]]:
    return [doc for path in K8S for doc in yaml.safe_load_all(path.read_text())]


# Reading command lines ---------------------------------------------------------


def _argv(command: list[str]) -> list[str]:
    """The program's argv, looking through ``sh -c "exec ..."``."""
    if command[:2] == ["sh", "-c"]:
        words = shlex.split(command[2])
        return words[1:] if words[0] == "exec" else words
    return command


def _program(argv: list[str]) -> tuple[str, ...]:
    """What runs: the module and sub-command, or the Spark application's package."""
    if "-m" in argv:
        start = argv.index("-m") + 1
        module = argv[start]
        sub = argv[start + 1] if module == "publisher_svc" else None
        return (module, sub) if sub else (module,)
    if argv[0] == "spark-submit":
        (script,) = [a for a in argv if a.endswith(".py")]
        return (pathlib.PurePosixPath(script).parent.name,)
    raise AssertionError(f"unknown program in {argv}")


def _flags(argv: list[str]) -> dict[str, str]:
    """The program's own --flag value pairs (after the module or script)."""
    if "-m" in argv:
        start = argv.index("-m") + 2
    else:
        start = next(i for i, a in enumerate(argv) if a.endswith(".py")) + 1
    args = argv[start:]
    return {
        a: args[i + 1]
        for i, a in enumerate(args)
        if a.startswith("--") and i + 1 < len(args)
    }


def _host_port(value: str) -> tuple[str, int] | None:
    match = re.fullmatch(r"([A-Za-z0-9.-]+):(\d+)", value)
    return (match[1], int(match[2])) if match else None


def _listen_port(argv: list[str]) -> int:
    address = _host_port(_flags(argv)["--listen"])
    assert address is not None
    return address[1]


def _kafka_port(env: dict[str, str]) -> int:
    match = re.search(r"PLAINTEXT://:(\d+)", env["KAFKA_LISTENERS"])
    assert match, env["KAFKA_LISTENERS"]
    return int(match[1])


def _k8s_workloads(docs: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    return {
        d["metadata"]["name"]: d
        for d in docs
        if d["kind"] in ("Deployment", "StatefulSet")
    }


def _k8s_services(docs: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    return {d["metadata"]["name"]: d for d in docs if d["kind"] == "Service"}


def _k8s_command(workload: dict[str, Any]) -> list[str]:
    (container,) = workload["spec"]["template"]["spec"]["containers"]
    argv: list[str] = container.get("command", []) + container.get("args", [])
    return argv


def _assert_same_role(role: str, remote: list[str], local: list[str]) -> None:
    """The remote command runs the same program with the same flags and ports."""
    assert _program(remote) == _program(local), role
    remote_flags, local_flags = _flags(remote), _flags(local)
    assert set(remote_flags) == set(local_flags) - LOCAL_ONLY_FLAGS, role
    for flag, value in remote_flags.items():
        if flag in PER_HOST_FLAGS:
            continue
        remote_address, local_address = _host_port(value), _host_port(local_flags[flag])
        if remote_address and local_address:
            assert remote_address[1] == local_address[1], (role, flag)
        else:
            assert value == local_flags[flag], (role, flag)


# Compose -------------------------------------------------------------------------


def test_files_say_the_single_machine_path_is_make_up() -> None:
    """Each multi-host file opens by pointing at `make up`."""
    for path in [COMPOSE, *K8S]:
        header = path.read_text().split("\n\n")[0]
        assert "`make up`" in header, path


def test_compose_has_one_service_per_role(compose: dict[str, Any]) -> None:
    """Kafka, the aggregator, publishers, subscribers, ingest and Envoy are there."""
    assert set(ROLES) <= set(compose["services"])


@pytest.mark.parametrize("role", PYTHON_ROLES)
def test_compose_commands_match_the_mesh(
    compose: dict[str, Any], mesh_argv: dict[str, list[str]], role: str
) -> None:
    """Each role runs the module mesh.py runs, with the same flags and ports."""
    command = _argv(compose["services"][role]["command"])

    _assert_same_role(role, command, mesh_argv[role])


def test_compose_aggregator_is_spark_submit_with_a_master(
    compose: dict[str, Any],
) -> None:
    """The aggregator goes through spark-submit with an explicit master."""
    command = compose["services"]["aggregator"]["command"]

    assert command[0] == "spark-submit"
    assert "--master" in command
    (script,) = [a for a in command if a.endswith(".py")]
    assert (ROOT / pathlib.PurePosixPath(script).relative_to("/app")).exists()


def _pom_coordinates() -> set[str]:
    """group:artifact:version of each dependency in deploy/spark/pom.xml."""
    pom = ElementTree.parse(ROOT / "deploy" / "spark" / "pom.xml").getroot()
    ns = {"m": "http://maven.apache.org/POM/4.0.0"}
    properties = {
        e.tag.split("}")[1]: e.text for e in pom.iterfind("m:properties/*", ns)
    }
    found = set()
    for dep in pom.findall("m:dependencies/m:dependency", ns):
        group, artifact, version = (
            dep.findtext(f"m:{k}", namespaces=ns)
            for k in ("groupId", "artifactId", "version")
        )
        version = re.sub(r"\$\{(.+?)\}", lambda m: str(properties[m[1]]), str(version))
        found.add(f"{group}:{artifact}:{version}")
    return found


@pytest.mark.parametrize("where", ["compose", "k8s"])
def test_aggregator_submit_carries_the_local_jars(
    compose: dict[str, Any], k8s: list[dict[str, Any]], where: str
) -> None:
    """spark-submit gets the same Kafka connector and protobuf-java as the
    bootstrap, and the tap decoder jar the image copies in."""
    if where == "compose":
        command = _argv(compose["services"]["aggregator"]["command"])
    else:
        command = _k8s_command(_k8s_workloads(k8s)["aggregator"])

    packages = command[command.index("--packages") + 1].split(",")
    jars = command[command.index("--jars") + 1].split(",")

    assert set(packages) == _pom_coordinates()
    assert jars == ["/app/jars/emostream-aggregator.jar"]
    dockerfile = compose["x-app"]["build"]["dockerfile_inline"]
    assert "COPY .cache/spark/jars/emostream-aggregator.jar jars/" in dockerfile


def test_compose_upstreams_name_services_on_their_ports(
    compose: dict[str, Any],
) -> None:
    """Every host:port a role dials is a service listening on that port."""
    services = compose["services"]
    listening = {
        name: _listen_port(_argv(s["command"]))
        for name, s in services.items()
        if name in PYTHON_ROLES and name != "aggregator"
    }
    listening["kafka"] = _kafka_port(services["kafka"]["environment"])
    for role in PYTHON_ROLES:
        for flag, value in _flags(_argv(services[role]["command"])).items():
            address = _host_port(value)
            if address is None or flag == "--listen":
                continue
            assert listening.get(address[0]) == address[1], (role, flag, value)


def test_compose_kafka_runs_kraft_on_the_layout_port(
    compose: dict[str, Any], layout: MeshLayout
) -> None:
    """Kafka is one KRaft node (broker and controller) on the layout's port."""
    env = compose["services"]["kafka"]["environment"]

    assert set(env["KAFKA_PROCESS_ROLES"].split(",")) == {"broker", "controller"}
    assert f"PLAINTEXT://:{layout.kafka_port}" in env["KAFKA_LISTENERS"]
    assert env["KAFKA_AUTO_CREATE_TOPICS_ENABLE"] == "false"
    topics = compose["services"]["topics"]["command"][0]
    assert "emostream.emojis" in topics
    assert "emostream.swarms" in topics


def test_envoy_backends_are_compose_services_on_their_ports(
    compose: dict[str, Any], layout: MeshLayout
) -> None:
    """The multi-host Envoy config dials services that listen where it expects."""
    services = compose["services"]
    command = services["envoy"]["command"]
    config_path = command[command.index("-c") + 1]

    assert config_path == "/app/deploy/envoy/envoy-multihost.yaml"
    assert f"{layout.envoy_port}:{layout.envoy_port}" in services["envoy"]["ports"]
    for host, port in _envoy_backends():
        assert _listen_port(_argv(services[host]["command"])) == port, host


def _envoy_backends() -> list[tuple[str, int]]:
    config = json.loads(envoy_config.MULTI_HOST_CONFIG.read_text())
    return [
        (
            e["endpoint"]["address"]["socket_address"]["address"],
            e["endpoint"]["address"]["socket_address"]["port_value"],
        )
        for cluster in config["static_resources"]["clusters"]
        for locality in cluster["load_assignment"]["endpoints"]
        for e in locality["lb_endpoints"]
    ]


# Kubernetes ----------------------------------------------------------------------


def test_k8s_has_a_workload_per_role(k8s: list[dict[str, Any]]) -> None:
    """Every role is a Deployment or StatefulSet; stateful roles keep a volume."""
    workloads = _k8s_workloads(k8s)

    assert set(ROLES) <= set(workloads)
    for stateful in ("kafka", "aggregator", "publisher-main"):
        assert workloads[stateful]["kind"] == "StatefulSet", stateful
        assert workloads[stateful]["spec"]["volumeClaimTemplates"], stateful


@pytest.mark.parametrize("role", PYTHON_ROLES)
def test_k8s_commands_match_the_mesh(
    k8s: list[dict[str, Any]], mesh_argv: dict[str, list[str]], role: str
) -> None:
    """Each container runs the module mesh.py runs, with the same flags and ports."""
    command = _k8s_command(_k8s_workloads(k8s)[role])

    _assert_same_role(role, command, mesh_argv[role])


def test_k8s_services_expose_the_ports_containers_listen_on(
    k8s: list[dict[str, Any]],
) -> None:
    """Each dialled name is a Service whose port is the one its pods listen on."""
    workloads, services = _k8s_workloads(k8s), _k8s_services(k8s)
    listening = {
        name: _listen_port(_k8s_command(w))
        for name, w in workloads.items()
        if name in PYTHON_ROLES and name != "aggregator"
    }
    (kafka,) = workloads["kafka"]["spec"]["template"]["spec"]["containers"]
    listening["kafka"] = _kafka_port({e["name"]: e["value"] for e in kafka["env"]})
    dialled = [
        address
        for role in PYTHON_ROLES
        for flag, value in _flags(_k8s_command(workloads[role])).items()
        if flag != "--listen" and (address := _host_port(value))
    ]

    for host, port in [*dialled, *_envoy_backends()]:
        assert host in services, host
        service_ports = [p["port"] for p in services[host]["spec"]["ports"]]
        assert port in service_ports, (host, port)
        assert listening[host] == port, host


def test_k8s_envoy_backends_are_headless_services(k8s: list[dict[str, Any]]) -> None:
    """Envoy resolves ingest and subscriber names to every pod, so they are headless."""
    services = _k8s_services(k8s)

    for host, _ in _envoy_backends():
        assert services[host]["spec"].get("clusterIP") == "None", host


def test_k8s_envoy_reads_the_multi_host_config(k8s: list[dict[str, Any]]) -> None:
    """The Envoy pod starts with the multi-host bootstrap shipped in the image."""
    command = _k8s_command(_k8s_workloads(k8s)["envoy"])

    assert command[command.index("-c") + 1] == "/app/deploy/envoy/envoy-multihost.yaml"
