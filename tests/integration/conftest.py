"""The real mesh for integration tests: Kafka, Spark, the services and Envoy.

One mesh serves the whole session, on its own port base
(EMOSTREAM_TEST_PORT_BASE, default 18080) and in a temporary run folder, so a
mesh started by ``make up`` is never touched. Tests that stop a process start
it again before they end.

EMOSTREAM_TEST_ROLES narrows the roles started (comma-separated from
``aggregator,fanout``) for quick runs while developing one role.
"""

from __future__ import annotations

import os
import pathlib
import shutil
import tempfile
import time
from collections.abc import Callable, Iterator

import pytest
from confluent_kafka import Consumer, TopicPartition

from deploy.layout import MeshLayout
from deploy.mesh import Mesh

ROLES = os.environ.get("EMOSTREAM_TEST_ROLES", "aggregator,fanout").split(",")


@pytest.fixture(scope="session")
def mesh() -> Iterator[Mesh]:
    run_dir = pathlib.Path(tempfile.mkdtemp(prefix="emostream-test-"))
    layout = MeshLayout(
        run_dir=run_dir,
        port_base=int(os.environ.get("EMOSTREAM_TEST_PORT_BASE", 18080)),
        aggregator="aggregator" in ROLES,
        fanout="fanout" in ROLES,
        noop_ingest=True,
    )
    the_mesh = Mesh(layout)
    try:
        the_mesh.up()
        yield the_mesh
    finally:
        the_mesh.down()
        if os.environ.get("EMOSTREAM_TEST_KEEP_RUN") is None:
            shutil.rmtree(run_dir, ignore_errors=True)


@pytest.fixture
def fanout(mesh: Mesh) -> Mesh:
    """The session mesh, for tests that need swarms to reach viewers."""
    if not (mesh.layout.fanout and mesh.layout.aggregator):
        pytest.skip("the fan-out needs the aggregator and fanout roles")
    return mesh


def wait_for(
    condition: Callable[[], bool], *, timeout_s: float, what: str, every_s: float = 0.2
) -> None:
    """Polls ``condition`` until true; fails the test naming ``what`` otherwise."""
    deadline = time.monotonic() + timeout_s
    while not condition():
        if time.monotonic() > deadline:
            pytest.fail(f"timed out after {timeout_s} s waiting for {what}")
        time.sleep(every_s)


def read_topic(
    bootstrap: str,
    topic: str,
    *,
    keep: Callable[[bytes], bool],
    expected: int,
    timeout_s: float = 30.0,
) -> list[bytes]:
    """Reads ``topic`` from the beginning with a fresh consumer.

    Returns the values ``keep`` accepts, once ``expected`` of them arrived and
    the topic's end is reached (so extra records would have been seen too).
    """
    consumer = Consumer(
        {
            "bootstrap.servers": bootstrap,
            "group.id": f"test-reader-{time.monotonic_ns()}",
            "enable.auto.commit": False,
            "auto.offset.reset": "earliest",
            "isolation.level": "read_committed",
        }
    )
    try:
        metadata = consumer.list_topics(topic, timeout=10)
        partitions = [
            TopicPartition(topic, p, 0) for p in metadata.topics[topic].partitions
        ]
        consumer.assign(partitions)
        kept: list[bytes] = []
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            message = consumer.poll(0.5)
            if message is None:
                if len(kept) >= expected and _at_end(consumer, partitions):
                    return kept
                continue
            if message.error():
                continue
            value = message.value()
            if value is not None and keep(value):
                kept.append(value)
        return kept
    finally:
        consumer.close()


def _at_end(consumer: Consumer, partitions: list[TopicPartition]) -> bool:
    for tp in consumer.position(partitions):
        _, high = consumer.get_watermark_offsets(tp, timeout=5)
        if tp.offset < high:
            return False
    return True
