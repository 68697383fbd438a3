"""TapProducer against a broker that is not there: refusals and lost records."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator

import pytest

from ingest_svc import metrics
from ingest_svc.config import IngestConfig
from ingest_svc.errors import BrokerUnavailable, QueueFull
from ingest_svc.producer import TapProducer

# Nothing listens on port 1: connections are refused at once.
NO_BROKER = "127.0.0.1:1"


@pytest.fixture
def config() -> IngestConfig:
    return IngestConfig(
        kafka_bootstrap=NO_BROKER,
        queue_max_messages=5,
        max_batch=5,
        probe_timeout_s=0.3,
        flush_timeout_s=0.5,
    )


@pytest.fixture
async def producer(config: IngestConfig) -> AsyncIterator[TapProducer]:
    the_producer = TapProducer(config)
    yield the_producer
    await the_producer.close()


def test_settings_make_accepted_taps_durable(producer: TapProducer) -> None:
    """All replicas acknowledge, retries are idempotent, batches linger 500 ms."""
    settings = producer.settings()

    assert settings["acks"] == "all"
    assert settings["enable.idempotence"] is True
    assert settings["linger.ms"] == 500
    assert settings["compression.type"] in ("lz4", "zstd")
    assert settings["message.timeout.ms"] >= 60_000
    assert "logger" in settings


class _Queue:
    """Stands in for librdkafka's queue length."""

    def __init__(self) -> None:
        self.length = 0

    def __len__(self) -> int:
        return self.length


def test_deliveries_are_counted_without_a_report_per_record(
    producer: TapProducer,
) -> None:
    """Only failures call back; records that left the queue without failing
    count as delivered, and a delivery marks a down broker up again."""
    assert producer.settings()["delivery.report.only.error"] is True
    queue, real = _Queue(), producer._producer
    producer._producer = queue  # type: ignore[assignment]
    producer._broker_up = False
    delivered = metrics.DELIVERED._value.get()
    try:
        producer._produced, queue.length, producer._failed = 10, 10, 0
        producer._count_deliveries(1.0)
        assert metrics.DELIVERED._value.get() == delivered
        assert not producer.is_available()

        producer._produced, queue.length, producer._failed = 12, 3, 2
        producer._count_deliveries(2.0)
        assert metrics.DELIVERED._value.get() == delivered + 7
        assert producer.is_available()
    finally:
        producer._producer = real


def test_calls_are_refused_while_the_broker_is_unreachable(
    producer: TapProducer,
) -> None:
    """A broker that does not answer the probe makes reserve() raise at once."""
    producer.start()

    assert not producer.is_available()
    with pytest.raises(BrokerUnavailable):
        producer.reserve(1)


def test_full_local_queue_is_queue_full(producer: TapProducer) -> None:
    """Past queue_max_messages, producing raises QueueFull instead of blocking."""
    for i in range(5):
        producer.produce_nowait(f"u-{i}", b"tap")

    with pytest.raises(QueueFull):
        producer.produce_nowait("u-5", b"tap")


def test_reserve_refuses_a_batch_that_would_not_fit(producer: TapProducer) -> None:
    """A batch larger than the queue is refused before any item is queued."""
    producer._set_broker_up(True, reason="test")

    with pytest.raises(QueueFull):
        producer.reserve(6)


async def test_records_left_at_shutdown_are_logged_as_lost(
    producer: TapProducer, caplog: pytest.LogCaptureFixture
) -> None:
    """A flush that cannot deliver reports the lost count at ERROR."""
    producer.start()
    producer.produce_nowait("u-0", b"tap")

    with caplog.at_level(logging.ERROR, logger="ingest_svc.producer"):
        await producer.close()

    assert any("producer.records_lost" in r.getMessage() for r in caplog.records)
