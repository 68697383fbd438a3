"""Prometheus metrics of the ingest service."""

from __future__ import annotations

from collections.abc import Callable

import prometheus_client

ACCEPTED = prometheus_client.Counter(
    "emostream_ingest_accepted",
    "Taps queued for Kafka and answered OK.",
)
REJECTED = prometheus_client.Counter(
    "emostream_ingest_rejected",
    "Taps refused, by reason (the field at fault, or the condition).",
    ["reason"],
)
DELIVERED = prometheus_client.Counter(
    "emostream_ingest_delivered",
    "Records Kafka acknowledged.",
)
DELIVERY_FAILED = prometheus_client.Counter(
    "emostream_ingest_delivery_failed",
    "Accepted records Kafka never acknowledged: lost taps.",
)
QUEUE_DEPTH = prometheus_client.Gauge(
    "emostream_ingest_queue_depth",
    "Records in the producer queue, not yet acknowledged by Kafka.",
)
BROKER_UP = prometheus_client.Gauge(
    "emostream_ingest_broker_up",
    "1 while Kafka is taken to be reachable, 0 while new taps are refused.",
)


def watch_queue(depth: Callable[[], int], broker_up: Callable[[], bool]) -> None:
    """Reads the queue depth and broker state at each scrape."""
    QUEUE_DEPTH.set_function(depth)
    BROKER_UP.set_function(lambda: float(broker_up()))


def serve(port: int) -> None:
    """Serves /metrics on 127.0.0.1:``port`` from a daemon thread."""
    prometheus_client.start_http_server(port, addr="127.0.0.1")
