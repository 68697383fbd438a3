"""The aggregator in the real mesh: taps through ingest, swarms out of Kafka."""

from __future__ import annotations

import threading
import time
from collections import Counter, defaultdict
from collections.abc import Iterator

import grpc
import pytest
from confluent_kafka import Consumer, TopicPartition

from aggregator import warm_up
from deploy.layout import EMOJI_TOPIC, SWARM_TOPIC
from deploy.mesh import Mesh
from emostream.v1 import emostream_pb2, emostream_pb2_grpc, internal_pb2
from tests.integration.conftest import read_topic, wait_for

pytestmark = pytest.mark.integration

FACTOR = 1000
SEND_BATCH = 500
# Marks the end of a test's taps; counted apart from the emojis under test.
SENTINEL = "🏁"


@pytest.fixture
def aggregator(mesh: Mesh) -> Mesh:
    if not mesh.layout.aggregator:
        pytest.skip("the aggregator role is not started (EMOSTREAM_TEST_ROLES)")
    return mesh


@pytest.fixture
def ingest(mesh: Mesh) -> Iterator[emostream_pb2_grpc.EmojiIngestStub]:
    with grpc.insecure_channel(f"127.0.0.1:{mesh.layout.ingest_port(0)}") as channel:
        yield emostream_pb2_grpc.EmojiIngestStub(channel)


def send_taps(
    ingest: emostream_pb2_grpc.EmojiIngestStub, match_id: str, emoji: str, count: int
) -> None:
    """Sends ``count`` taps in SendEmojis calls; every one must be accepted."""
    sent = 0
    while sent < count:
        size = min(SEND_BATCH, count - sent)
        request = emostream_pb2.SendEmojisRequest()
        for i in range(size):
            item = request.emojis.add(
                match_id=match_id, user_id=f"viewer-{(sent + i) % 97}", emoji_type=emoji
            )
            item.timestamp.GetCurrentTime()
        reply = ingest.SendEmojis(request, timeout=10)
        assert reply.accepted == size, f"ingest refused taps: {reply.rejected[:3]}"
        sent += size


class SwarmReader:
    """Reads the swarm topic from the start, keeping one record per
    (query_id, match_id, batch_id): a replayed batch counts once."""

    def __init__(self, bootstrap: str, match_ids: set[str]) -> None:
        self._match_ids = match_ids
        self.records: dict[tuple[str, str, int], internal_pb2.SwarmRecord] = {}
        self.replays = 0
        self._consumer = Consumer(
            {
                "bootstrap.servers": bootstrap,
                "group.id": f"test-swarms-{time.monotonic_ns()}",
                "enable.auto.commit": False,
            }
        )
        metadata = self._consumer.list_topics(SWARM_TOPIC, timeout=10)
        self._consumer.assign(
            [
                TopicPartition(SWARM_TOPIC, p, 0)
                for p in metadata.topics[SWARM_TOPIC].partitions
            ]
        )

    def poll(self) -> None:
        """Takes in whatever arrived, for at most about a second."""
        for message in self._consumer.consume(1000, timeout=0.5):
            value = message.value()
            if message.error() or value is None:
                continue
            record = internal_pb2.SwarmRecord.FromString(value)
            if record.match_id not in self._match_ids:
                continue
            key = (record.query_id, record.match_id, record.batch_id)
            if key in self.records:
                self.replays += 1
                assert self.records[key] == _without_window(record, self.records[key])
            else:
                self.records[key] = record

    def swarms(self, match_id: str) -> list[internal_pb2.SwarmRecord]:
        return [r for r in self.records.values() if r.match_id == match_id]

    def raw_totals(self, match_id: str) -> Counter[str]:
        totals: Counter[str] = Counter()
        for record in self.swarms(match_id):
            for count in record.emojis:
                totals[count.emoji] += count.raw
        return totals

    def close(self) -> None:
        self._consumer.close()


def _without_window(
    record: internal_pb2.SwarmRecord, like: internal_pb2.SwarmRecord
) -> internal_pb2.SwarmRecord:
    # A replayed batch counts the same taps; only its processing window moves.
    copy = internal_pb2.SwarmRecord()
    copy.CopyFrom(record)
    copy.window_start.CopyFrom(like.window_start)
    copy.window_end.CopyFrom(like.window_end)
    return copy


@pytest.fixture
def reader(mesh: Mesh, match_ids: list[str]) -> Iterator[SwarmReader]:
    swarm_reader = SwarmReader(mesh.layout.kafka_bootstrap, set(match_ids))
    yield swarm_reader
    swarm_reader.close()


@pytest.fixture
def match_ids(match_id: str) -> list[str]:
    return [f"{match_id}-a", f"{match_id}-b"]


def wait_for_totals(
    reader: SwarmReader,
    ingest: emostream_pb2_grpc.EmojiIngestStub,
    expected: dict[str, Counter[str]],
    *,
    timeout_s: float,
) -> None:
    """Waits until every expected tap is counted, then until a sentinel tap
    sent afterwards is counted too: swarms of one match share a partition, so
    any replayed swarm of the earlier taps has then been read as well."""

    def reached() -> bool:
        reader.poll()
        return all(
            reader.raw_totals(m)[e] >= n
            for m, c in expected.items()
            for e, n in c.items()
        )

    wait_for(reached, timeout_s=timeout_s, what=f"swarm totals {dict(expected)}")
    for match_id in expected:
        send_taps(ingest, match_id, SENTINEL, 1)

    def sentinels_seen() -> bool:
        reader.poll()
        return all(reader.raw_totals(m)[SENTINEL] >= 1 for m in expected)

    wait_for(sentinels_seen, timeout_s=30, what="the sentinel taps' swarms")


def counted(reader: SwarmReader, match_id: str) -> Counter[str]:
    totals = reader.raw_totals(match_id)
    del totals[SENTINEL]
    return totals


def test_swarms_count_each_match_apart_with_shown_one_per_thousand(
    aggregator: Mesh,
    ingest: emostream_pb2_grpc.EmojiIngestStub,
    reader: SwarmReader,
    match_ids: list[str],
) -> None:
    """Raw counts per match and emoji add up to what was sent, and each swarm
    shows max(1, raw // 1000) of each emoji: 3785 ❤️ show 3, 20 🔥 and
    1000 😭 show 1 each.

    The taps are sent while the aggregator is stopped, so that the first batch
    after its restart holds all of them: shown counts are per batch, and taps
    split over two batches could show 2 + 1 where one batch shows 3."""
    first, second = match_ids
    expected = {
        first: Counter({"❤️": 3785, "🔥": 20}),
        second: Counter({"😭": 1000}),
    }
    bootstrap = aggregator.layout.kafka_bootstrap
    aggregator.stop("aggregator")
    stored_before = warm_up.stored(bootstrap, EMOJI_TOPIC)

    send_taps(ingest, first, "❤️", 3785)
    send_taps(ingest, first, "🔥", 20)
    send_taps(ingest, second, "😭", 1000)
    wait_for(
        lambda: warm_up.stored(bootstrap, EMOJI_TOPIC) >= stored_before + 4805,
        timeout_s=30,
        what="the taps in Kafka",
    )
    aggregator.start("aggregator")
    wait_for_totals(reader, ingest, expected, timeout_s=60)

    assert counted(reader, first) == expected[first]
    assert counted(reader, second) == expected[second]
    shown: dict[str, Counter[str]] = defaultdict(Counter)
    for match_id in match_ids:
        for swarm in reader.swarms(match_id):
            assert swarm.match_id == match_id
            assert swarm.total == sum(c.raw for c in swarm.emojis)
            assert [c.raw for c in swarm.emojis] == sorted(
                (c.raw for c in swarm.emojis), reverse=True
            )
            for count in swarm.emojis:
                assert count.shown == max(1, count.raw // FACTOR), count
                shown[match_id][count.emoji] += count.shown
        del shown[match_id][SENTINEL]
    assert shown == {first: {"❤️": 3, "🔥": 1}, second: {"😭": 1}}
    assert len({query_id for query_id, _, _ in reader.records}) == 1


def test_killed_aggregator_resumes_without_losing_or_doubling_taps(
    aggregator: Mesh,
    ingest: emostream_pb2_grpc.EmojiIngestStub,
    reader: SwarmReader,
    match_ids: list[str],
) -> None:
    """After kill -9 and a restart from the checkpoint, the deduplicated
    swarms count every tap sent exactly once, under the same query id."""
    match_id = match_ids[0]
    rounds, per_round = 20, 300
    expected = {match_id: Counter({"❤️": rounds * per_round})}
    sending_failed: list[BaseException] = []

    def send_rounds() -> None:
        try:
            for _ in range(rounds):
                send_taps(ingest, match_id, "❤️", per_round)
                time.sleep(0.5)
        except BaseException as exc:  # reported by the test thread below
            sending_failed.append(exc)

    sender = threading.Thread(target=send_rounds, name="tap-sender")
    sender.start()
    try:

        def some_swarm() -> bool:
            reader.poll()
            return bool(reader.swarms(match_id))

        wait_for(some_swarm, timeout_s=60, what="a first swarm before the kill")
        aggregator.kill("aggregator")
        # The ready file of the killed run is stale; the new run writes its own.
        (aggregator.layout.run_dir / "aggregator.ready").unlink(missing_ok=True)
        aggregator.start("aggregator")
    finally:
        sender.join(timeout=60)
    assert not sender.is_alive(), "the tap sender did not finish"
    assert not sending_failed, f"sending taps failed: {sending_failed[0]!r}"

    wait_for_totals(reader, ingest, expected, timeout_s=90)

    assert counted(reader, match_id) == expected[match_id]
    assert len({query_id for query_id, _, _ in reader.records}) == 1


def test_replayed_batch_has_its_batch_id_and_counts_once(
    aggregator: Mesh,
    ingest: emostream_pb2_grpc.EmojiIngestStub,
    reader: SwarmReader,
    match_ids: list[str],
) -> None:
    """A crash after a batch's swarms went out but before Spark committed the
    batch: the restarted query runs that batch again with the same batch id
    and the same taps, and deduplicating by batch id counts each tap once."""
    match_id = match_ids[0]
    expected = {match_id: Counter({"🔥": 1500})}
    send_taps(ingest, match_id, "🔥", 1500)
    wait_for_totals(reader, ingest, expected, timeout_s=60)
    aggregator.stop("aggregator")

    # The newest batch (the sentinel's, as no taps came after it) has published
    # its swarms; without its commit, the checkpoint is what a kill between
    # publishing and committing leaves behind.
    checkpoint = aggregator.layout.run_dir / "aggregator" / "checkpoint"
    newest = max(
        int(p.name) for p in (checkpoint / "offsets").iterdir() if p.name.isdigit()
    )
    (checkpoint / "commits" / str(newest)).unlink(missing_ok=True)
    (checkpoint / "commits" / f".{newest}.crc").unlink(missing_ok=True)
    before = reader.replays
    aggregator.start("aggregator")

    def replayed() -> bool:
        reader.poll()
        return reader.replays > before

    wait_for(replayed, timeout_s=90, what=f"batch {newest} run again")
    assert counted(reader, match_id) == expected[match_id]
    assert reader.raw_totals(match_id)[SENTINEL] == 1
    assert len({query_id for query_id, _, _ in reader.records}) == 1


def test_warm_up_taps_stay_in_their_own_topic(aggregator: Mesh) -> None:
    """The aggregator warmed up on made-up taps read from Kafka, from a topic
    of their own: it holds 20 batches' worth, filling it again adds none, and
    no swarm counts a made-up tap."""
    bootstrap = aggregator.layout.kafka_bootstrap
    topic = EMOJI_TOPIC + warm_up.TOPIC_SUFFIX
    log_text = aggregator.log_path("aggregator").read_text(errors="replace")
    assert "warm_up.completed rounds=20 taps_from=kafka" in log_text

    taps = 20 * warm_up.ROWS_PER_ROUND
    assert warm_up.stored(bootstrap, topic) == taps
    warm_up.fill_topic(bootstrap, topic, partitions=1, taps=taps)
    assert warm_up.stored(bootstrap, topic) == taps

    def made_up(value: bytes) -> bool:
        match_id = internal_pb2.SwarmRecord.FromString(value).match_id
        return match_id.startswith("warm-up-")

    assert read_topic(bootstrap, SWARM_TOPIC, keep=made_up, expected=0) == []
