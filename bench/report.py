"""What a benchmark run found, as terminal lines and as docs/benchmarks.md.

Each scenario yields a ``Section``: its table, the targets it checks, notes,
and the command that reruns it alone. The document keeps one block per
scenario between markers, so that rerunning one scenario (``--only``) replaces
its block and keeps the others from their earlier run.
"""

from __future__ import annotations

import datetime as dt
import importlib.metadata
import json
import os
import pathlib
import platform
import re
import subprocess
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field

from deploy.layout import CACHE, ROOT

DOC = ROOT / "docs" / "benchmarks.md"

# Scenario blocks in the document: opened by a marker that carries the
# block's targets as JSON (for the summary table), closed by an end marker.
_BLOCK_START = re.compile(r"^<!-- bench:(?P<name>[a-z]+) (?P<data>\{.*\}) -->$")
_BLOCK_END = "<!-- /bench -->"


@dataclass(frozen=True)
class Target:
    """One figure checked against its goal, e.g. p99 latency <= 2.8 s."""

    figure: str
    value: float | None
    goal: float
    unit: str
    # True when larger values are better (throughput), False for durations.
    at_least: bool

    @property
    def met(self) -> bool | None:
        if self.value is None:
            return None
        return self.value >= self.goal if self.at_least else self.value <= self.goal

    @property
    def verdict(self) -> str:
        return {True: "met", False: "missed", None: "not measured"}[self.met]

    def goal_text(self) -> str:
        return f"{'>=' if self.at_least else '<='} {number(self.goal)} {self.unit}"

    def value_text(self) -> str:
        if self.value is None:
            return "-"
        return f"{number(self.value)} {self.unit}"

    def line(self) -> str:
        return (
            f"{self.figure}: {self.value_text()} "
            f"(target {self.goal_text()}): {self.verdict}"
        )


@dataclass
class Section:
    """One scenario's outcome, ready for the terminal and the document."""

    name: str
    title: str
    # Commands that rerun this scenario alone, most convenient first.
    commands: list[str]
    table: list[str] = field(default_factory=list)
    targets: list[Target] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    measured_at: str = ""
    load_at_start: str = ""
    elapsed_s: float = 0.0

    def block(self) -> list[str]:
        """The scenario's markdown block, markers included."""
        data = {
            "targets": [asdict(t) for t in self.targets],
            "title": self.title,
        }
        lines = [
            f"<!-- bench:{self.name} {json.dumps(data, ensure_ascii=False)} -->",
            f"## {self.title}",
            "",
            f"Measured {self.measured_at}, load average at start "
            f"{self.load_at_start}, took {self.elapsed_s:.0f} s. Rerun alone:",
            "",
            "```sh",
            *self.commands,
            "```",
            "",
        ]
        if self.targets:
            lines += [*targets_table(self.targets), ""]
        if self.table:
            lines += [*self.table, ""]
        lines += self.notes
        if self.notes:
            lines.append("")
        lines.append(_BLOCK_END)
        return lines


def number(value: float) -> str:
    """A figure as people read it: thousands separated, few decimals."""
    if abs(value) >= 100:
        return f"{value:,.0f}"
    if abs(value) >= 10:
        return f"{value:.1f}"
    return f"{value:.2f}"


def markdown_table(
    header: Sequence[str], rows: Sequence[Sequence[object]], *, numeric_from: int = 1
) -> list[str]:
    """A markdown table; columns from ``numeric_from`` on are right-aligned."""
    align = ["---" if i < numeric_from else "---:" for i in range(len(header))]
    lines = [_row(header), _row(align)]
    for row in rows:
        if len(row) != len(header):
            raise ValueError(f"row has {len(row)} cells, header has {len(header)}")
        lines.append(_row([str(cell) for cell in row]))
    return lines


def _row(cells: Sequence[str]) -> str:
    return "| " + " | ".join(c.replace("|", "\\|") for c in cells) + " |"


def targets_table(targets: Sequence[Target]) -> list[str]:
    return markdown_table(
        ["figure", "measured", "target", "verdict"],
        [(t.figure, t.value_text(), t.goal_text(), t.verdict) for t in targets],
    )


# The machine ---------------------------------------------------------------------


def load_average() -> str:
    one, five, fifteen = os.getloadavg()
    return f"{one:.2f} / {five:.2f} / {fifteen:.2f}"


def now_text() -> str:
    return dt.datetime.now(dt.UTC).strftime("%Y-%m-%d %H:%M UTC")


def machine() -> list[tuple[str, str]]:
    """What the figures were measured on: hardware, load and versions."""
    return [
        ("cores (nproc)", str(os.cpu_count())),
        ("memory", _memory()),
        ("CPU", _cpu_model()),
        ("load average at start (1/5/15 min)", load_average()),
        ("OS", f"{platform.system()} {platform.release()}"),
        ("Python", platform.python_version()),
        ("grpcio", _version("grpcio")),
        ("confluent-kafka (librdkafka)", _librdkafka()),
        ("Kafka", _kafka_version()),
        ("Spark (pyspark)", _version("pyspark")),
        ("Envoy", _envoy_version()),
        ("Java", _java_version()),
    ]


def _memory() -> str:
    for line in pathlib.Path("/proc/meminfo").read_text().splitlines():
        if line.startswith("MemTotal:"):
            return f"{int(line.split()[1]) / 1024**2:.1f} GiB"
    return "unknown"


def _cpu_model() -> str:
    for line in pathlib.Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("model name"):
            return line.split(":", 1)[1].strip()
    return platform.processor() or "unknown"


def _version(package: str) -> str:
    try:
        return importlib.metadata.version(package)
    except importlib.metadata.PackageNotFoundError:
        return "not installed"


def _librdkafka() -> str:
    import confluent_kafka

    return f"{_version('confluent-kafka')} ({confluent_kafka.libversion()[0]})"


def _kafka_version() -> str:
    jars = sorted((CACHE / "kafka" / "libs").glob("kafka_2.13-*.jar"))
    if not jars:
        return "not installed"
    return jars[0].stem.removeprefix("kafka_2.13-")


def _envoy_version() -> str:
    envoy = ROOT / ".venv" / "bin" / "envoy"
    out = _command_output([str(envoy), "--version"])
    found = re.search(r"/(\d+\.\d+\.\d+)/", out)
    return found.group(1) if found else "unknown"


def _java_version() -> str:
    out = _command_output(["java", "-version"])
    return out.splitlines()[0].strip() if out else "unknown"


def _command_output(argv: list[str]) -> str:
    try:
        done = subprocess.run(argv, capture_output=True, text=True, timeout=30)
    except (OSError, subprocess.TimeoutExpired):
        return ""
    return done.stdout + done.stderr


# The document --------------------------------------------------------------------


def read_blocks(text: str) -> dict[str, tuple[list[str], list[Target]]]:
    """The scenario blocks of an existing document: lines and targets by name."""
    blocks: dict[str, tuple[list[str], list[Target]]] = {}
    current: str | None = None
    lines: list[str] = []
    targets: list[Target] = []
    for line in text.splitlines():
        start = _BLOCK_START.match(line)
        if start is not None:
            current, lines = start["name"], [line]
            data = json.loads(start["data"])
            targets = [Target(**t) for t in data.get("targets", [])]
        elif current is not None:
            lines.append(line)
            if line == _BLOCK_END:
                blocks[current] = (lines, targets)
                current = None
    return blocks


def render(
    sections: Sequence[Section],
    *,
    order: Sequence[str],
    machine_rows: Sequence[tuple[str, str]],
    previous: str = "",
    intro: Sequence[str] = (),
) -> str:
    """The whole document: this run's sections, and earlier blocks for the rest."""
    fresh = {s.name: (s.block(), s.targets) for s in sections}
    kept = read_blocks(previous)
    blocks = [fresh.get(name) or kept.get(name) for name in order]

    lines = ["# Benchmarks", "", *intro]
    lines += ["## Machine", ""]
    lines += markdown_table(["what", "value"], machine_rows, numeric_from=2)
    lines += ["", "## Targets", ""]
    summary = [t for block in blocks if block for t in block[1]]
    lines += targets_table(summary) if summary else ["No target measured yet."]
    lines.append("")
    for block in blocks:
        if block:
            lines += block[0] + [""]
    return "\n".join(lines).rstrip() + "\n"
