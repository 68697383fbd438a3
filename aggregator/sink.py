"""Writes a batch's SwarmRecords to the swarm topic and waits for the acks.

A batch completes only once Kafka holds its swarms. While the broker is
away the batch waits (logging every ``WAIT_LOG_EVERY_S``) rather than fail:
a failed batch stops the query, and nothing restarts it. Only a swarm that
Kafka can never take, one larger than its message limit, is dropped, with an
ERROR naming the match; it would otherwise fail the same batch on every
replay. That takes taps written straight to the topic: through ingest a
swarm stays far below the limit.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Sequence

from confluent_kafka import KafkaError, KafkaException, Message, Producer

from emostream.v1 import internal_pb2

log = logging.getLogger(__name__)

WAIT_LOG_EVERY_S = 10.0
LOGGED_KEY_MAX = 200


_OnDelivery = Callable[[KafkaError | None, "Message[bytes, bytes]"], None]


class SwarmPublishError(RuntimeError):
    """Some swarms of a batch were not acknowledged; the batch must not commit."""


class SwarmProducer:
    """An idempotent producer (acks=all) keyed by match id.

    ``publish`` returns only when Kafka acknowledged every record, so the
    streaming batch that calls it completes only once its swarms are durable.
    ``timeout_s`` bounds that wait; 0 waits as long as the broker is away.
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
                # 0: librdkafka retries until the broker answers.
                "message.timeout.ms": int(timeout_s * 1000),
                "logger": log,
            }
        )

    def publish(self, records: Sequence[internal_pb2.SwarmRecord]) -> None:
        """Sends ``records`` and waits for all acks; raises SwarmPublishError."""
        if not records:
            return
        failures: list[KafkaError] = []

        def on_delivery(err: KafkaError | None, msg: Message[bytes, bytes]) -> None:
            if err is None:
                return
            if err.code() == KafkaError.MSG_SIZE_TOO_LARGE:
                _log_dropped(msg.key(), len(msg.value() or b""), err)
            else:
                failures.append(err)

        for record in records:
            self._produce(record, on_delivery)
        pending = self._wait(len(records))

        if pending or failures:
            first = failures[0].str() if failures else "no answer"
            raise SwarmPublishError(
                f"{len(failures)} failed and {pending} unacknowledged of "
                f"{len(records)} swarms: {first}"
            )

    def _wait(self, sent: int) -> int:
        """Flushes until every record is answered or the timeout passes."""
        started = time.monotonic()
        while True:
            waited = time.monotonic() - started
            step = WAIT_LOG_EVERY_S
            if self._timeout_s:
                step = min(step, max(0.0, self._timeout_s - waited))
            pending = self._producer.flush(step)
            waited = time.monotonic() - started
            if not pending or (self._timeout_s and waited >= self._timeout_s):
                return pending
            log.warning(
                "swarms.unacknowledged pending=%d of=%d waited_s=%d topic=%s",
                pending,
                sent,
                waited,
                self._topic,
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
            error = exc.args[0]
            if (
                isinstance(error, KafkaError)
                and error.code() == KafkaError.MSG_SIZE_TOO_LARGE
            ):
                _log_dropped(key, len(value), error)
                return
            raise SwarmPublishError(str(exc)) from exc

    def close(self) -> None:
        """Sends what is still queued, for up to the publish timeout (or 10 s)."""
        self._producer.flush(self._timeout_s or WAIT_LOG_EVERY_S)


def _log_dropped(key: bytes | str | None, size: int, error: KafkaError) -> None:
    # Ingest keeps match ids to 64 characters; a record written around it may
    # carry any length, so the log shows the start of it.
    shown = key if key is None or len(key) <= LOGGED_KEY_MAX else key[:LOGGED_KEY_MAX]
    log.error(
        "swarm.dropped match_id=%r%s bytes=%d error=%s (larger than Kafka takes)",
        shown,
        "" if shown is key else f" match_id_length={len(key or '')}",
        size,
        error.name(),
    )
