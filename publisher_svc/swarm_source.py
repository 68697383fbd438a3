"""The main publisher's Kafka side: swarm records in, sequenced relay messages out.

Each poll batch is handled in four steps: decode and sequence the records,
save the state, make the new relay messages visible to followers, commit the
offsets. Saving before anything leaves the process means a crash at any point
replays records that the saved state already recognises.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Iterable

from confluent_kafka import Consumer, KafkaError, KafkaException, Message
from confluent_kafka import TopicPartition as KafkaPartition
from google.protobuf.message import DecodeError
from google.protobuf.timestamp_pb2 import Timestamp

from emostream.v1 import emostream_pb2, internal_pb2
from publisher_svc.relay_log import RelayLog
from publisher_svc.sequencer import Sequencer
from publisher_svc.state import PublisherState, StateStore

log = logging.getLogger(__name__)


class SwarmSource:
    """Consumes the swarm topic into the relay log, exactly once per swarm."""

    def __init__(
        self,
        *,
        consumer: Consumer,
        topic: str,
        store: StateStore,
        sequencer: Sequencer,
        relay_log: RelayLog,
        poll_timeout_s: float = 0.5,
        batch_max: int = 500,
    ) -> None:
        self._consumer = consumer
        self._topic = topic
        self._store = store
        self._sequencer = sequencer
        self._log = relay_log
        self._poll_timeout_s = poll_timeout_s
        self._batch_max = batch_max
        self._stopping = False
        self.undecodable = 0
        self.replays_dropped = 0

    async def run(self) -> None:
        """Consumes until ``stop`` is called."""
        self._consumer.subscribe([self._topic])
        log.info("consumer.subscribed topic=%s", self._topic)
        while not self._stopping:
            records = await asyncio.to_thread(self._fetch)
            if records:
                await self._handle(records)

    def stop(self) -> None:
        self._stopping = True

    def close(self) -> None:
        self._consumer.close()

    # One batch --------------------------------------------------------------

    async def _handle(self, records: list[Message]) -> None:
        messages = list(self._sequence(records))

        if messages:
            state = self._snapshot(messages)
            await asyncio.to_thread(self._store.save, state)
            self._log.extend(messages)

        offsets = _next_offsets(records)
        if not offsets:
            return
        try:
            await asyncio.to_thread(
                self._consumer.commit, offsets=offsets, asynchronous=False
            )
        except KafkaException as exc:
            # The records come again after a restart and are dropped as replays.
            log.warning("consumer.commit_failed error=%s", exc.args[0])

    def _fetch(self) -> list[Message]:
        first = self._consumer.poll(self._poll_timeout_s)
        if first is None:
            return []
        rest = self._consumer.consume(self._batch_max - 1, timeout=0)
        return [first, *rest]

    def _sequence(
        self, records: Iterable[Message]
    ) -> Iterable[internal_pb2.RelayMessage]:
        relay_seq = self._log.newest_relay_seq
        now = Timestamp()
        now.GetCurrentTime()
        for record in records:
            swarm_record = self._decode(record)
            if swarm_record is None:
                continue
            seq = self._sequencer.next_seq(
                swarm_record.match_id, swarm_record.query_id, swarm_record.batch_id
            )
            if seq is None:
                self.replays_dropped += 1
                log.info(
                    "record.replay_dropped match=%s query_id=%s batch_id=%d",
                    swarm_record.match_id,
                    swarm_record.query_id,
                    swarm_record.batch_id,
                )
                continue
            relay_seq += 1
            log.debug(
                "swarm.sequenced match=%s seq=%d relay_seq=%d",
                swarm_record.match_id,
                seq,
                relay_seq,
            )
            yield internal_pb2.RelayMessage(
                relay_seq=relay_seq,
                log_id=self._log.log_id,
                swarm=_swarm(swarm_record, seq, now),
            )

    def _decode(self, record: Message) -> internal_pb2.SwarmRecord | None:
        error = record.error()
        if error is not None:
            if error.code() != KafkaError._PARTITION_EOF:
                log.warning("consumer.error error=%s", error.str())
            return None
        try:
            swarm_record = internal_pb2.SwarmRecord.FromString(record.value() or b"")
        except DecodeError:
            swarm_record = None
        if swarm_record is None or not swarm_record.match_id:
            self.undecodable += 1
            log.error(
                "record.undecodable topic=%s partition=%d offset=%d count=%d",
                record.topic(),
                record.partition(),
                record.offset(),
                self.undecodable,
            )
            return None
        return swarm_record

    def _snapshot(self, messages: list[internal_pb2.RelayMessage]) -> PublisherState:
        capacity = self._log.capacity
        history = [*self._log.messages(), *messages][-capacity:]
        return PublisherState(
            log_id=self._log.log_id,
            newest_relay_seq=messages[-1].relay_seq,
            matches=self._sequencer.matches,
            history=history,
        )


def _swarm(
    record: internal_pb2.SwarmRecord, seq: int, published_at: Timestamp
) -> emostream_pb2.Swarm:
    return emostream_pb2.Swarm(
        match_id=record.match_id,
        seq=seq,
        first_seq=seq,
        notice=emostream_pb2.NOTICE_SWARM,
        window_start=record.window_start,
        window_end=record.window_end,
        emojis=record.emojis,
        total=record.total,
        published_at=published_at,
        taps=record.taps,
    )


def _next_offsets(records: Iterable[Message]) -> list[KafkaPartition]:
    """The offset to commit per partition: one past the last record read."""
    newest: dict[tuple[str, int], int] = {}
    for record in records:
        topic, partition, offset = record.topic(), record.partition(), record.offset()
        if (
            record.error() is None
            and topic
            and partition is not None
            and offset is not None
        ):
            newest[(topic, partition)] = offset + 1
    return [KafkaPartition(t, p, o) for (t, p), o in newest.items()]
