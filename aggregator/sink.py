"""Writes a batch's SwarmRecords to the swarm topic and waits for the acks."""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence

from confluent_kafka import KafkaError, KafkaException, Message, Producer

from emostream.v1 import internal_pb2

log = logging.getLogger(__name__)


_OnDelivery = Callable[[KafkaError | None, "Message[bytes, bytes]"], None]


class SwarmPublishError(RuntimeError):
    """Some swarms of a batch were not acknowledged; the batch must not commit."""


class SwarmProducer:
    """An idempotent producer (acks=all) keyed by match id.

    ``publish`` returns only when Kafka acknowledged every record, so the
    streaming batch that calls it completes only once its swarms are durable.
    """

    def __init__(self, bootstrap: str, topic: str, *, timeout_s: float) -> None:
        self._topic = topic
        self._timeout_s = timeout_s
        self._producer = Producer(
            {
                "bootstrap.servers": bootstrap,
                "acks": "all",
                "enable.idempotence": True,
                "linger.ms": 5,
                "message.timeout.ms": int(timeout_s * 1000),
                "logger": log,
            }
        )

    def publish(self, records: Sequence[internal_pb2.SwarmRecord]) -> None:
        """Sends ``records`` and waits for all acks; raises SwarmPublishError."""
        if not records:
            return
        failures: list[KafkaError] = []

        def on_delivery(err: KafkaError | None, _msg: Message[bytes, bytes]) -> None:
            if err is not None:
                failures.append(err)

        for record in records:
            self._produce(record, on_delivery)
        pending = self._producer.flush(self._timeout_s)

        if pending or failures:
            first = failures[0].str() if failures else "no answer"
            raise SwarmPublishError(
                f"{len(failures)} failed and {pending} unacknowledged of "
                f"{len(records)} swarms: {first}"
            )

    def _produce(
        self, record: internal_pb2.SwarmRecord, on_delivery: _OnDelivery
    ) -> None:
        key = record.match_id.encode()
        value = record.SerializeToString()
        try:
            self._producer.produce(self._topic, value, key, on_delivery=on_delivery)
        except BufferError:
            # The local queue is full: let deliveries drain, then try once more.
            self._producer.poll(1.0)
            self._producer.produce(self._topic, value, key, on_delivery=on_delivery)
        except KafkaException as exc:
            raise SwarmPublishError(str(exc)) from exc

    def close(self) -> None:
        """Sends what is still queued, for up to the publish timeout."""
        self._producer.flush(self._timeout_s)
