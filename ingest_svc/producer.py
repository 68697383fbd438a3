"""The Kafka side of ingest: queues taps and watches that they are delivered.

Why the settings are what they are:

- A tap that got OK must reach Kafka unless the process itself dies (kill -9
  loses what is still queued, up to a linger's worth of taps). So every
  record is retried for ``message_timeout_ms`` (two minutes by default): a
  short broker outage or restart is ridden out by the records already
  accepted, and the idempotent producer keeps those retries free of
  duplicates.
- New calls must not hang or pile up while the broker is gone. librdkafka
  reports a dead broker at once through the error callback
  (_TRANSPORT, _ALL_BROKERS_DOWN) but fails the queued records only after
  ``message_timeout_ms``. So those reports, a timed-out record, or records
  that make no progress for ``stall_s`` only make the broker *suspect*; the
  poller then asks the broker for the topic's metadata with a short timeout.
  If that fails, new calls are refused with UNAVAILABLE until a probe (every
  second) or a delivery succeeds again. A suspicion that a probe disproves
  (an idle connection the broker closed, say) refuses nothing.

Delivery reports fire only inside poll() or flush(). A dedicated thread
polls all the time: it serves reports however busy the event loop is, poll()
waits without holding the GIL, and the blocking metadata probe runs there
without touching the event loop. Callbacks therefore run on that thread and
only touch counters, metrics and single attributes.

Only failed deliveries are reported (``delivery.report.only.error``): a
report per delivered tap cost a Python call each, a third of the process's
CPU under batched load. The poller counts deliveries instead, as records
produced minus records still queued minus records failed.
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from collections import Counter
from typing import Any

from confluent_kafka import KafkaError, KafkaException, Message, Producer

from emostream.runtime.kafka_logs import LibrdkafkaLog
from ingest_svc import metrics
from ingest_svc.config import IngestConfig
from ingest_svc.errors import BrokerUnavailable, IngestError, QueueFull

log = logging.getLogger(__name__)

_POLL_S = 0.1
_PROBE_EVERY_S = 1.0
_FAILURE_REPORT_EVERY_S = 1.0

# Error-callback codes that mean the connection to the broker is gone.
_CONNECTION_LOST = frozenset({KafkaError._TRANSPORT, KafkaError._ALL_BROKERS_DOWN})


class TapProducer:
    """Queues serialized taps for one topic and tracks whether Kafka answers."""

    def __init__(self, config: IngestConfig) -> None:
        self._config = config
        # Taken as up until the first probe in start() says otherwise, so
        # that a broker down at start is logged like any later outage.
        self._broker_up = True
        self._fatal: KafkaError | None = None
        self._suspect = threading.Event()
        self._stopping = threading.Event()
        self._last_progress = time.monotonic()
        self._last_probe = 0.0
        self._last_failure_report = 0.0
        self._failures: Counter[str] = Counter()
        self._failures_lock = threading.Lock()
        # Written by the event loop, read by the poller; plain ints.
        self._produced = 0
        self._failed = 0
        self._delivered = 0
        self._producer = Producer(self.settings())
        self._poller = threading.Thread(
            target=self._poll_routine, name="kafka-poller", daemon=True
        )

    def settings(self) -> dict[str, Any]:
        """The librdkafka configuration, callbacks included."""
        c = self._config
        return {
            "bootstrap.servers": c.kafka_bootstrap,
            "client.id": f"emostream-ingest-{c.listen}",
            "acks": "all",
            "enable.idempotence": True,
            "linger.ms": c.linger_ms,
            "compression.type": c.compression,
            "message.timeout.ms": c.message_timeout_ms,
            "queue.buffering.max.messages": c.queue_max_messages,
            "queue.buffering.max.kbytes": c.queue_max_kbytes,
            # Reconnect within a second of the broker's return.
            "reconnect.backoff.max.ms": 1_000,
            "delivery.report.only.error": True,
            "on_delivery": self._on_delivery,
            "error_cb": self._on_error,
            "logger": LibrdkafkaLog("ingest_svc.librdkafka"),
        }

    # Lifecycle -------------------------------------------------------------

    def start(self) -> None:
        """Checks that the broker answers, then starts the poller thread.

        A broker that is down at start is not fatal: calls are refused until
        it answers.
        """
        self._probe(timeout_s=self._config.probe_timeout_s)
        metrics.watch_queue(self.queued, self.is_available)
        self._poller.start()

    async def close(self) -> None:
        """Stops polling and flushes every queued record, within a bound."""
        loop = asyncio.get_running_loop()
        self._stopping.set()
        if self._poller.is_alive():
            await loop.run_in_executor(None, self._poller.join)

        queued = self._undelivered()
        log.info("producer.flushing queued=%d", queued)
        left = await loop.run_in_executor(
            None, self._producer.flush, self._config.flush_timeout_s
        )
        self._report_failures(force=True)
        if left:
            log.error(
                "producer.records_lost topic=%s count=%d flush_timeout_s=%s",
                self._config.topic,
                left,
                self._config.flush_timeout_s,
            )
        else:
            log.info("producer.flushed topic=%s records=%d", self._config.topic, queued)

    # Producing -------------------------------------------------------------

    def is_available(self) -> bool:
        """True unless the broker is known to be down or the producer failed."""
        return self._broker_up and self._fatal is None

    def queued(self) -> int:
        """Records queued or in flight, not yet acknowledged by Kafka."""
        return len(self._producer)

    def reserve(self, count: int) -> None:
        """Refuses a call that would take ``count`` records nowhere.

        Raises ``BrokerUnavailable`` while the broker is down and
        ``QueueFull`` when ``count`` more records would not fit the queue.
        The queue length librdkafka reports also counts callbacks not yet
        served, so the check errs on the side of refusing.
        """
        if not self.is_available():
            raise BrokerUnavailable("Kafka is unavailable; retry later")
        if len(self._producer) + count > self._config.queue_max_messages:
            raise QueueFull("ingest queue is full; retry later")

    def produce_nowait(self, key: str, value: bytes) -> None:
        """Queues one record; returns once librdkafka holds it."""
        try:
            self._producer.produce(self._config.topic, value=value, key=key)
            self._produced += 1
        except BufferError as exc:
            raise QueueFull("ingest queue is full; retry later") from exc
        except KafkaException as exc:
            error = exc.args[0]
            if isinstance(error, KafkaError) and error.retriable():
                raise BrokerUnavailable("Kafka is unavailable; retry later") from exc
            raise IngestError(f"produce failed: {error}") from exc

    # The poller thread -----------------------------------------------------

    def _poll_routine(self) -> None:
        while not self._stopping.is_set():
            self._producer.poll(_POLL_S)
            now = time.monotonic()
            self._count_deliveries(now)

            # Records waiting with no delivery for stall_s: the broker may
            # hang without closing the connection.
            if len(self._producer) == 0:
                self._last_progress = now
            elif now - self._last_progress > self._config.stall_s:
                self._suspect.set()

            due = now - self._last_probe >= _PROBE_EVERY_S
            if (self._suspect.is_set() or not self._broker_up) and due:
                self._suspect.clear()
                self._probe(timeout_s=self._config.probe_timeout_s)

            self._report_failures()

    def _probe(self, *, timeout_s: float) -> None:
        """Asks the broker for the topic's metadata; marks it up or down."""
        self._last_probe = time.monotonic()
        topic = self._config.topic
        try:
            metadata = self._producer.list_topics(topic, timeout=timeout_s)
        except KafkaException as exc:
            self._set_broker_up(False, reason=str(exc.args[0]))
            return

        found = metadata.topics.get(topic)
        if found is None or found.error is not None:
            reason = "topic missing" if found is None else str(found.error)
            self._set_broker_up(False, reason=reason)
            return
        self._set_broker_up(True, reason="metadata")

    def _set_broker_up(self, up: bool, *, reason: str) -> None:
        if up == self._broker_up:
            return
        self._broker_up = up
        if up:
            self._last_progress = time.monotonic()
            log.info("broker.up bootstrap=%s", self._config.kafka_bootstrap)
        else:
            log.warning(
                "broker.down bootstrap=%s reason=%r queued=%d (refusing new taps)",
                self._config.kafka_bootstrap,
                reason,
                self._undelivered(),
            )

    def _count_deliveries(self, now: float) -> None:
        """Adds the records delivered since the last call; each one is progress."""
        # Read produced before the queue: a record produced in between then
        # only makes this count low for one round, never high.
        produced = self._produced
        delivered = produced - len(self._producer) - self._failed
        if delivered > self._delivered:
            metrics.DELIVERED.inc(delivered - self._delivered)
            self._delivered = delivered
            self._last_progress = now
            if not self._broker_up:
                self._set_broker_up(True, reason="delivery")

    def _undelivered(self) -> int:
        """Records not yet acknowledged, once pending callbacks are served.

        librdkafka's queue length also counts unserved callbacks (error
        reports pile up while nobody polls). Not for use inside a callback.
        """
        self._producer.poll(0)
        return len(self._producer)

    # Callbacks (run inside poll() or flush()) --------------------------------

    def _on_delivery(self, error: KafkaError | None, message: Message) -> None:
        if error is None:
            return  # not reported with delivery.report.only.error
        self._failed += 1
        metrics.DELIVERY_FAILED.inc()
        with self._failures_lock:
            self._failures[error.name()] += 1
        if error.code() == KafkaError._MSG_TIMED_OUT:
            self._suspect.set()
        log.debug(
            "delivery.failed topic=%s partition=%s key=%r error=%s",
            message.topic(),
            message.partition(),
            message.key(),
            error.name(),
        )

    def _on_error(self, error: KafkaError) -> None:
        if error.fatal():
            self._fatal = error
            log.error("producer.fatal error=%s (refusing every tap from now)", error)
        elif error.code() in _CONNECTION_LOST:
            self._suspect.set()
            log.debug("kafka.connection_lost error=%s", error)
        else:
            log.warning("kafka.error error=%s", error)

    def _report_failures(self, *, force: bool = False) -> None:
        """Logs failed deliveries at ERROR, summed per error, at most each second."""
        now = time.monotonic()
        if not force and now - self._last_failure_report < _FAILURE_REPORT_EVERY_S:
            return
        self._last_failure_report = now
        with self._failures_lock:
            failures, self._failures = self._failures, Counter()
        for name, count in failures.items():
            log.error(
                "delivery.failed topic=%s count=%d error=%s (accepted taps lost)",
                self._config.topic,
                count,
                name,
            )
