"""The aggregator's batch log: every completed batch logged once, in order."""

from __future__ import annotations

import logging

import pytest
from pyspark.sql.streaming.listener import StreamingQueryProgress

from aggregator.job import BatchProgressLog


def _progress(
    batch_id: int, trigger_ms: int = 300, *, ran: bool = True
) -> StreamingQueryProgress:
    durations = {"triggerExecution": trigger_ms, "latestOffset": 10}
    if ran:
        durations["addBatch"] = 200
    return StreamingQueryProgress.fromJson(
        {
            "id": "00000000-0000-0000-0000-000000000001",
            "runId": "00000000-0000-0000-0000-000000000002",
            "name": "q",
            "timestamp": "2026-01-01T00:00:00.000Z",
            "batchId": batch_id,
            "batchDuration": trigger_ms,
            "durationMs": durations,
            "eventTime": {},
            "stateOperators": [],
            "numInputRows": 10 * batch_id if ran else 0,
            "sources": [],
            "sink": {"description": "foreachBatch", "numOutputRows": -1},
        }
    )


class FakeQuery:
    """A query whose batches complete when the test says."""

    def __init__(self) -> None:
        self.recentProgress: list[StreamingQueryProgress] = []

    def complete(self, batch_id: int, trigger_ms: int = 300) -> None:
        self.recentProgress.append(_progress(batch_id, trigger_ms))

    def idle(self, next_batch_id: int) -> None:
        """Spark's report while no data arrives, under the next batch's id."""
        self.recentProgress.append(_progress(next_batch_id, 10, ran=False))

    @property
    def lastProgress(self) -> StreamingQueryProgress | None:
        return self.recentProgress[-1] if self.recentProgress else None


def _logged(caplog: pytest.LogCaptureFixture) -> list[tuple[int, str]]:
    return [
        (record.levelno, record.getMessage().split(" rows=")[0])
        for record in caplog.records
        if record.getMessage().startswith("batch.progress")
    ]


@pytest.fixture
def progress_log(caplog: pytest.LogCaptureFixture) -> BatchProgressLog:
    caplog.set_level(logging.INFO, logger="aggregator")
    return BatchProgressLog(trigger_s=2.0)


def test_each_batch_is_logged_once_even_when_several_complete_between_polls(
    progress_log: BatchProgressLog, caplog: pytest.LogCaptureFixture
) -> None:
    query = FakeQuery()

    progress_log.poll(query)  # nothing yet
    query.complete(4)  # a restart: the first batch of this run is not 0
    query.complete(5)
    progress_log.poll(query)
    progress_log.poll(query)  # nothing new
    query.complete(6, trigger_ms=2500)
    progress_log.poll(query)
    query.complete(7)
    query.complete(8)
    query.complete(9)
    progress_log.poll(query)

    assert _logged(caplog) == [
        (logging.INFO, "batch.progress batch=4"),
        (logging.INFO, "batch.progress batch=5"),
        (logging.WARNING, "batch.progress batch=6"),
        (logging.INFO, "batch.progress batch=7"),
        (logging.INFO, "batch.progress batch=8"),
        (logging.INFO, "batch.progress batch=9"),
    ]


def test_idle_reports_are_not_logged_as_the_batch_that_has_yet_to_run(
    progress_log: BatchProgressLog, caplog: pytest.LogCaptureFixture
) -> None:
    query = FakeQuery()

    query.idle(0)  # a restart before any data
    progress_log.poll(query)
    query.complete(0)
    query.complete(1)
    query.idle(2)
    progress_log.poll(query)
    query.idle(2)
    progress_log.poll(query)
    query.complete(2, trigger_ms=2500)
    progress_log.poll(query)

    assert _logged(caplog) == [
        (logging.INFO, "batch.progress batch=0"),
        (logging.INFO, "batch.progress batch=1"),
        (logging.WARNING, "batch.progress batch=2"),
    ]
