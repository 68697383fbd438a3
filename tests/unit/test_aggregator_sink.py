"""The swarm producer against a broker that is not there."""

from __future__ import annotations

import logging

import pytest

from aggregator.sink import SwarmProducer, SwarmPublishError
from emostream.v1 import internal_pb2

# Nothing listens on port 1: connections are refused at once.
NO_BROKER = "127.0.0.1:1"


def test_a_swarm_larger_than_kafka_takes_is_dropped_and_logged(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """A swarm Kafka could never take does not fail the batch; it is logged."""
    producer = SwarmProducer(NO_BROKER, "emostream.swarms", timeout_s=0.5)
    huge = internal_pb2.SwarmRecord(match_id="m-huge", query_id="q" * 2_000_000)

    with caplog.at_level(logging.ERROR, logger="aggregator.sink"):
        producer.publish([huge])

    assert "swarm.dropped" in caplog.text
    assert "m-huge" in caplog.text


def test_a_dropped_swarms_long_match_id_is_logged_by_its_start(
    caplog: pytest.LogCaptureFixture,
) -> None:
    producer = SwarmProducer(NO_BROKER, "emostream.swarms", timeout_s=0.5)
    long_id = "m" * 600_000 + "-end"
    huge = internal_pb2.SwarmRecord(match_id=long_id, query_id="q" * 2_000_000)

    with caplog.at_level(logging.ERROR, logger="aggregator.sink"):
        producer.publish([huge])

    (line,) = [r.getMessage() for r in caplog.records if "swarm.dropped" in r.msg]
    assert len(line) < 400
    assert f"match_id_length={len(long_id)}" in line
    assert "-end" not in line


def test_unacknowledged_swarms_fail_the_batch_after_the_timeout() -> None:
    """With a timeout set, swarms Kafka never acknowledged fail the batch."""
    producer = SwarmProducer(NO_BROKER, "emostream.swarms", timeout_s=0.5)

    with pytest.raises(SwarmPublishError, match="of 1 swarms"):
        producer.publish([internal_pb2.SwarmRecord(match_id="m", query_id="q")])
