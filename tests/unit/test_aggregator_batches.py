"""The per-batch transformation in a local SparkSession, on static DataFrames,
with the tap decoder jar that deploy/bootstrap.sh builds."""

from __future__ import annotations

import os
import sys
from collections.abc import Iterator

import pytest

pyspark_sql = pytest.importorskip("pyspark.sql")

from aggregator.batches import TAP_FUNCTION, register_tap_decoder, summarize  # noqa: E402
from aggregator.config import DEFAULT_JARS_DIR  # noqa: E402
from aggregator.swarms import UndecodableRun, Window, swarm_records  # noqa: E402
from emostream.v1 import internal_pb2  # noqa: E402

# The Kafka source's columns that matter, with one it has that is not read.
SCHEMA = "key binary, value binary, topic string, partition int, offset long"
BASE_MS = 1_767_000_000_000


@pytest.fixture(scope="module")
def spark() -> Iterator[pyspark_sql.SparkSession]:
    os.environ.setdefault("PYSPARK_PYTHON", sys.executable)
    os.environ.setdefault("SPARK_LOCAL_IP", "127.0.0.1")
    jars = sorted(str(p) for p in DEFAULT_JARS_DIR.glob("*.jar"))
    assert jars, f"no jars in {DEFAULT_JARS_DIR}: run deploy/bootstrap.sh"
    session = (
        pyspark_sql.SparkSession.builder.master("local[2]")
        .appName("aggregator-unit")
        .config("spark.jars", ",".join(jars))
        .config("spark.driver.host", "127.0.0.1")
        .config("spark.driver.bindAddress", "127.0.0.1")
        .config("spark.ui.enabled", "false")
        .config("spark.ui.showConsoleProgress", "false")
        .config("spark.default.parallelism", "2")
        .getOrCreate()
    )
    session.sparkContext.setLogLevel("ERROR")
    register_tap_decoder(session)
    yield session
    session.stop()


def _event(
    match_id: str,
    emoji: str,
    tapped_ms: int | None,
    *,
    received_ms: int | None = None,
) -> bytes:
    event = internal_pb2.EmojiEvent(match_id=match_id, user_id="u", emoji_type=emoji)
    if tapped_ms is not None:
        event.tapped_at.FromMilliseconds(tapped_ms)
    if received_ms is not None:
        event.received_at.FromMilliseconds(received_ms)
    return event.SerializeToString()


def _decode(
    spark: pyspark_sql.SparkSession, values: list[bytes | None]
) -> list[tuple[str, str, int | None] | None]:
    frame = spark.createDataFrame([(v,) for v in values], "value binary")
    rows = frame.select(
        pyspark_sql.functions.call_function(TAP_FUNCTION, "value").alias("tap")
    ).collect()
    return [tuple(row.tap) if row.tap is not None else None for row in rows]


def test_taps_before_1970_fall_in_the_bucket_that_holds_them(
    spark: pyspark_sql.SparkSession,
) -> None:
    """Buckets start at the floor of the tap time, negative times included."""
    batch = summarize(_records(spark, [_event("m", "👏", -150), _event("m", "👏", 50)]))

    assert batch.matches["m"].buckets == {-200: 1, 0: 1}


def test_decoder_reads_taps_and_rejects_what_is_not_one(
    spark: pyspark_sql.SparkSession,
) -> None:
    """Events decode to (match, emoji, tap ms); garbage, truncated, empty, null
    and bad-UTF-8 values decode to null."""
    good = _event("m1", "❤️", 1_700_000_000_123)
    values = [
        good,
        good[:-3],  # truncated inside tapped_at
        b"\xff\xff not an event",
        b"\x0a\x02\xff\xfe",  # match_id with bad UTF-8
        b"",  # parses, but has no match or emoji
        None,
        _event("m1", "", 1_700_000_000_000),  # no emoji
        good + b"\x12\x02\xff\xfe",  # user_id with bad UTF-8
    ]

    assert _decode(spark, values) == [
        ("m1", "❤️", 1_700_000_000_123),
        None,
        None,
        None,
        None,
        None,
        None,
        None,
    ]


def test_decoder_takes_the_tap_time_then_the_receive_time(
    spark: pyspark_sql.SparkSession,
) -> None:
    """tapped_at wins; without it, received_at; without both, no time."""
    values = [
        _event("m", "👏", 1_000_111, received_ms=1_000_999),
        _event("m", "👏", None, received_ms=1_000_456),
        _event("m", "👏", None),
    ]

    assert _decode(spark, values) == [
        ("m", "👏", 1_000_111),
        ("m", "👏", 1_000_456),
        ("m", "👏", None),
    ]


def test_decoder_treats_a_time_outside_timestamps_range_as_none(
    spark: pyspark_sql.SparkSession,
) -> None:
    """Seconds past year 9999 (whose milliseconds would overflow) or nanos
    past a second are no time: the receive time stands in, else none."""

    def event(seconds: int, nanos: int, received_ms: int | None = None) -> bytes:
        message = internal_pb2.EmojiEvent(match_id="m", user_id="u", emoji_type="👏")
        message.tapped_at.seconds = seconds
        message.tapped_at.nanos = nanos
        if received_ms is not None:
            message.received_at.FromMilliseconds(received_ms)
        return message.SerializeToString()

    values = [
        event(2**62, 0),
        event(-(2**62), 0, received_ms=1_000_456),
        event(1_000, 1_000_000_000, received_ms=1_000_789),
        event(1_000, -1),
        event(253_402_300_799, 999_999_999),
    ]

    assert _decode(spark, values) == [
        ("m", "👏", None),
        ("m", "👏", 1_000_456),
        ("m", "👏", 1_000_789),
        ("m", "👏", None),
        ("m", "👏", 253_402_300_799_999),
    ]


def test_decoder_skips_fields_it_does_not_know(
    spark: pyspark_sql.SparkSession,
) -> None:
    """A field added to EmojiEvent later (here number 15) does not stop decoding."""
    newer = _event("m", "🔥", 1_000_000) + b"\x78\x01" + b"\x7a\x03abc"

    assert _decode(spark, [newer]) == [("m", "🔥", 1_000_000)]


def _records(
    spark: pyspark_sql.SparkSession, values: list[bytes | None]
) -> pyspark_sql.DataFrame:
    """One Spark partition per Kafka partition, as the Kafka source reads them."""
    rows = [(b"k", v, "emostream.emojis", i % 3, 100 + i) for i, v in enumerate(values)]
    return spark.createDataFrame(rows, SCHEMA).repartition(3, "partition")


def test_batch_counts_each_match_and_emoji_apart_and_skips_bad_records(
    spark: pyspark_sql.SparkSession,
) -> None:
    """Partitions add up, matches never mix; undecodable records are counted
    with their position."""
    values: list[bytes | None] = []
    values += [_event("m1", "❤️", BASE_MS + i % 150) for i in range(3785)]
    values += [_event("m1", "🔥", BASE_MS + 120) for _ in range(20)]
    values += [_event("m2", "😭", BASE_MS + 250) for _ in range(1000)]
    values += [b"\xff\xff not an event", None]
    records = _records(spark, values)

    batch = summarize(records)
    swarms = swarm_records(
        batch, query_id="q", batch_id=3, window=Window(0, 2000), factor=1000
    )

    assert batch.input_rows == len(values)
    assert batch.undecodable == [
        UndecodableRun("emostream.emojis", 0, 1, 4906, 4906),
        UndecodableRun("emostream.emojis", 2, 1, 4905, 4905),
    ]
    by_match = {s.match_id: s for s in swarms}
    assert sorted(by_match) == ["m1", "m2"]
    m1, m2 = by_match["m1"], by_match["m2"]
    assert [(e.emoji, e.raw, e.shown) for e in m1.emojis] == [
        ("❤️", 3785, 3),
        ("🔥", 20, 1),
    ]
    assert [(e.emoji, e.raw, e.shown) for e in m2.emojis] == [("😭", 1000, 1)]
    # 3785 hearts spread over the first 150 ms: 100 ms buckets split them.
    assert [(t.start_unix_ms - BASE_MS, t.count) for t in m1.taps] == [
        (0, 25 * 100 + 35),
        (100, 25 * 50 + 20),
    ]
    assert [(t.start_unix_ms - BASE_MS, t.count) for t in m2.taps] == [(200, 1000)]
    assert (m1.total, m2.total) == (3805, 1000)


def test_empty_batch_yields_no_swarm(spark: pyspark_sql.SparkSession) -> None:
    """A batch without records produces no swarm and counts nothing."""
    records = spark.createDataFrame([], SCHEMA)

    batch = summarize(records)

    assert batch.input_rows == 0
    assert batch.undecodable == []
    assert (
        swarm_records(
            batch, query_id="q", batch_id=0, window=Window(0, 2000), factor=1000
        )
        == []
    )


def test_batch_of_only_undecodable_records_yields_no_swarm(
    spark: pyspark_sql.SparkSession,
) -> None:
    """Records that cannot be decoded are counted per partition with their
    offset range, and produce nothing."""
    records = _records(spark, [b"\x0a\x02\xff\xfe", b""] * 30)

    batch = summarize(records)

    assert batch.input_rows == 60
    assert [(u.partition, u.count) for u in batch.undecodable] == [
        (0, 20),
        (1, 20),
        (2, 20),
    ]
    first = batch.undecodable[0]
    assert (first.first_offset, first.last_offset) == (100, 157)
    assert dict(batch.matches) == {}
