"""The benchmark's pure parts: the latency floor, tables, and the document."""

from __future__ import annotations

import math

import pytest

from bench.ingest import profile_parts
from bench.latency import batch_seconds, floor_quantile, wait_cdf
from bench.report import Section, Target, markdown_table, read_blocks, render


def test_floor_of_linger_and_trigger_has_the_closed_form_percentiles() -> None:
    """Half a second of linger and a 2 s trigger give p50 1.25 s and p99
    2.5 - sqrt(0.02) s."""
    assert floor_quantile(50, 0.5, 2.0) == pytest.approx(1.25, abs=1e-6)
    assert floor_quantile(99, 0.5, 2.0) == pytest.approx(
        2.5 - math.sqrt(0.02), abs=1e-6
    )


def test_floor_shifts_by_a_batch_and_fan_out_shorter_than_the_trigger() -> None:
    """Fixed batch and fan-out times within the trigger move every percentile."""
    bare = floor_quantile(95, 0.5, 2.0)
    shifted = floor_quantile(95, 0.5, 2.0, [0.3], [0.05])
    assert shifted == pytest.approx(bare + 0.35, abs=1e-6)


def test_floor_waits_for_a_batch_that_outlasts_the_trigger() -> None:
    """A 3 s batch makes the wait for the next one span 3 s, not the trigger."""
    assert floor_quantile(50, 0.0, 2.0, [3.0]) == pytest.approx(4.5, abs=1e-6)


def test_floor_weighs_long_cycles_by_their_length() -> None:
    """Of a 2 s and a 6 s cycle, a tap lands in the long one three times in four."""
    # The wait is U(0, 2) with odds 1/4 and U(0, 6) with odds 3/4; the batch
    # then takes 1 s or 6 s, even odds. Solving P(S <= s) = 1/2 gives 19/3.
    median = floor_quantile(50, 0.0, 2.0, [1.0, 6.0])
    assert median == pytest.approx(19 / 3, abs=1e-6)


def test_wait_distribution_is_a_proper_distribution() -> None:
    """The wait's distribution rises from 0 to 1 and is symmetric about its mean."""
    assert wait_cdf(0.0, 0.5, 2.0) == 0.0
    assert wait_cdf(2.5, 0.5, 2.0) == 1.0
    assert wait_cdf(1.25, 0.5, 2.0) == pytest.approx(0.5)
    assert wait_cdf(0.2, 0.5, 2.0) == pytest.approx(1 - wait_cdf(2.3, 0.5, 2.0))
    assert wait_cdf(1.0, 0.0, 2.0) == pytest.approx(0.5)


def test_markdown_table_right_aligns_figures_and_escapes_pipes() -> None:
    """Columns after the first are right-aligned; a pipe in a cell is escaped."""
    lines = markdown_table(["what", "n"], [("a|b", 3)])
    assert lines == ["| what | n |", "| --- | ---: |", "| a\\|b | 3 |"]


def test_markdown_table_refuses_a_row_of_the_wrong_width() -> None:
    """A row with a missing cell is an error, not a crooked table."""
    with pytest.raises(ValueError, match="cells"):
        markdown_table(["a", "b"], [("only one",)])


def test_target_verdict_follows_its_direction() -> None:
    """Throughput is met at or above its goal, latency at or below."""
    assert Target("rate", 120.0, 100.0, "/s", at_least=True).verdict == "met"
    assert Target("p99", 2.9, 2.8, "s", at_least=False).verdict == "missed"
    assert Target("p50", None, 1.8, "s", at_least=False).verdict == "not measured"


def test_rerunning_one_scenario_keeps_the_other_blocks() -> None:
    """A scenario not rerun keeps its earlier block and target in the document."""
    old = Section("latency", "4. Latency", ["cmd"], table=["old table"])
    old.targets = [Target("p50", 1.5, 1.8, "s", at_least=False)]
    first = render([old], order=["ingest", "latency"], machine_rows=[("cores", "2")])
    new = Section("ingest", "1. Ingest", ["cmd"], table=["new table"])

    second = render(
        [new], order=["ingest", "latency"], machine_rows=[("cores", "2")],
        previous=first,
    )  # fmt: skip

    assert "old table" in second and "new table" in second
    assert second.index("new table") < second.index("old table")
    assert read_blocks(second)["latency"][1] == old.targets
    assert "| p50 | 1.50 s | <= 1.80 s | met |" in second


def test_batch_seconds_reads_the_aggregator_progress_lines() -> None:
    """Batches without rows are skipped; offsets plus addBatch time is taken."""
    log = "\n".join(
        [
            "batch.progress batch=1 rows=0 trigger_ms=50 offsets_ms=5 batch_ms=9",
            "x batch.progress batch=2 rows=10 trigger_ms=400 offsets_ms=20 "
            "batch_ms=300 commit_ms=80",
            "batch.progress batch=3 rows=5 trigger_ms=700",
        ]
    )
    assert batch_seconds(log) == [0.32, 0.7]


def test_profile_parts_sorts_samples_into_parts_of_the_service() -> None:
    """Each sampled stack counts once, in the first part its frames name."""
    collapsed = "\n".join(
        [
            "thread (1): MainThread;SendEmojis (servicer.py:1);to_event (v.py:2) 6",
            "thread (2): kafka-poller;_poll_routine (producer.py:3) 3",
            "thread (1): MainThread;_run_once (base_events.py:4) 1",
        ]
    )
    parts = dict(profile_parts(collapsed))
    assert parts["validating taps (validation.py to_event)"] == pytest.approx(0.6)
    assert parts["delivery reports (kafka-poller thread)"] == pytest.approx(0.3)
    assert sum(parts.values()) == pytest.approx(1.0)
