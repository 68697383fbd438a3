"""Sequencing, replay dropping and durable state of the main publisher."""

from __future__ import annotations

import asyncio
import pathlib

import pytest

from emostream.v1 import internal_pb2
from publisher_svc.relay_log import RelayLog
from publisher_svc.sequencer import Sequencer
from publisher_svc.state import PublisherState, StateError, StateStore
from publisher_svc.swarm_source import SwarmSource


def test_seqs_are_gap_free_per_match() -> None:
    """Each match counts its own seqs from 1 without gaps."""
    sequencer = Sequencer()

    seqs = [
        sequencer.next_seq("a", "q", 0),
        sequencer.next_seq("b", "q", 0),
        sequencer.next_seq("a", "q", 1),
        sequencer.next_seq("a", "q", 2),
    ]

    assert seqs == [1, 1, 2, 3]


def test_replayed_batches_are_dropped() -> None:
    """A batch_id not above the last one of the same query is a replay."""
    sequencer = Sequencer()
    sequencer.next_seq("a", "q", 5)

    assert sequencer.next_seq("a", "q", 5) is None
    assert sequencer.next_seq("a", "q", 4) is None
    assert sequencer.next_seq("a", "q", 6) == 2


def test_new_query_id_resets_batch_tracking_but_not_seq() -> None:
    """A new checkpoint may start at batch 0; its swarms continue the seq."""
    sequencer = Sequencer()
    sequencer.next_seq("a", "q1", 40)

    assert sequencer.next_seq("a", "q2", 0) == 2
    assert sequencer.next_seq("a", "q2", 0) is None


def test_state_round_trips(tmp_path: pathlib.Path) -> None:
    """What is saved is what is loaded, history included."""
    store = StateStore(tmp_path)
    sequencer = Sequencer()
    sequencer.next_seq("a", "q", 3)
    message = internal_pb2.RelayMessage(relay_seq=7, log_id="L")
    message.swarm.match_id = "a"
    message.swarm.seq = 1

    store.save(PublisherState("L", 7, sequencer.matches, [message]))
    loaded = store.load()

    assert loaded is not None
    assert (loaded.log_id, loaded.newest_relay_seq) == ("L", 7)
    assert loaded.matches["a"].seq == 1
    assert loaded.matches["a"].batch_id == 3
    assert loaded.history == [message]
    assert not list(tmp_path.glob("*.tmp"))


def test_unreadable_state_is_refused(tmp_path: pathlib.Path) -> None:
    """A damaged state file stops the start rather than reusing seqs."""
    StateStore(tmp_path).save(PublisherState("L"))
    (tmp_path / "publisher-state.json").write_text("{not json")

    with pytest.raises(StateError):
        StateStore(tmp_path).load()


class FakeRecord:
    """A consumed Kafka record, as far as SwarmSource reads it."""

    def __init__(self, offset: int, value: bytes) -> None:
        self._offset = offset
        self._value = value

    def error(self) -> None:
        return None

    def topic(self) -> str:
        return "swarms"

    def partition(self) -> int:
        return 0

    def offset(self) -> int:
        return self._offset

    def value(self) -> bytes:
        return self._value


class FakeConsumer:
    """Records the offsets committed."""

    def __init__(self) -> None:
        self.committed: list[int] = []

    def commit(self, *, offsets, asynchronous: bool) -> None:
        self.committed.append(offsets[0].offset)


def record(
    offset: int, match_id: str, batch_id: int, query_id: str = "q"
) -> FakeRecord:
    value = internal_pb2.SwarmRecord(
        match_id=match_id, query_id=query_id, batch_id=batch_id, total=batch_id
    ).SerializeToString()
    return FakeRecord(offset, value)


def start(store: StateStore) -> tuple[SwarmSource, RelayLog, FakeConsumer]:
    """A SwarmSource as the main publisher builds it, from the saved state."""
    state = store.load() or PublisherState("log-1")
    relay_log = RelayLog(
        capacity=100,
        log_id=state.log_id,
        newest_relay_seq=state.newest_relay_seq,
        history=state.history,
    )
    consumer = FakeConsumer()
    source = SwarmSource(
        consumer=consumer,  # type: ignore[arg-type]
        topic="swarms",
        store=store,
        sequencer=Sequencer(state.matches),
        relay_log=relay_log,
    )
    return source, relay_log, consumer


def test_restart_rereading_uncommitted_records_reuses_no_seq(
    tmp_path: pathlib.Path,
) -> None:
    """Records read again after a restart are replays; new ones get new seqs."""
    store = StateStore(tmp_path)
    source, relay_log, consumer = start(store)
    asyncio.run(source._handle([record(0, "a", 0), record(1, "a", 1)]))
    before = [(m.relay_seq, m.swarm.seq, m.swarm.total) for m in relay_log.messages()]

    # A crash before the commit: the same records come again, then a new one.
    source, relay_log, consumer = start(store)
    batch = [record(0, "a", 0), record(1, "a", 1), record(2, "a", 2)]
    asyncio.run(source._handle(batch))

    after = [(m.relay_seq, m.swarm.seq, m.swarm.total) for m in relay_log.messages()]
    assert before == [(1, 1, 0), (2, 2, 1)]
    assert after == [(1, 1, 0), (2, 2, 1), (3, 3, 2)]
    assert source.replays_dropped == 2
    assert consumer.committed == [3]


def test_undecodable_record_is_counted_and_skipped(tmp_path: pathlib.Path) -> None:
    """A record that is not a SwarmRecord is skipped without stopping the batch."""
    source, relay_log, consumer = start(StateStore(tmp_path))

    asyncio.run(source._handle([FakeRecord(0, b"\xff\xff\xff"), record(1, "a", 0)]))

    assert source.undecodable == 1
    assert [m.swarm.seq for m in relay_log.messages()] == [1]
    assert consumer.committed == [2]
