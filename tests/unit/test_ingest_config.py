"""The ingest configuration: flags, environment, and what it refuses."""

from __future__ import annotations

import pytest

from ingest_svc.config import IngestConfig, from_args


def test_mesh_command_line_is_understood() -> None:
    """The flags the mesh starts ingest with land in the configuration."""
    config = from_args(
        [
            "--listen", "127.0.0.1:21100",
            "--metrics-port", "21150",
            "--kafka", "127.0.0.1:21010",
            "--topic", "emostream.emojis",
        ]
    )  # fmt: skip

    assert config.listen == "127.0.0.1:21100"
    assert config.metrics_port == 21150
    assert config.kafka_bootstrap == "127.0.0.1:21010"
    assert config.topic == "emostream.emojis"
    assert config.linger_ms == 500
    assert not config.noop


def test_noop_command_line_is_understood() -> None:
    """The no-op backend's flags, without metrics or topic, are enough."""
    config = from_args(["--noop", "--listen", "127.0.0.1:1", "--kafka", "k:1"])

    assert config.noop
    assert config.metrics_port == 0


def test_environment_sets_what_flags_leave_out(monkeypatch: pytest.MonkeyPatch) -> None:
    """EMOSTREAM_* variables set the tuning knobs."""
    monkeypatch.setenv("EMOSTREAM_INGEST_MAX_SKEW_S", "60")
    monkeypatch.setenv("EMOSTREAM_INGEST_COMPRESSION", "zstd")

    config = from_args(["--listen", "127.0.0.1:1"])

    assert config.max_skew_s == 60.0
    assert config.compression == "zstd"


@pytest.mark.parametrize(
    "fields",
    [
        {"listen": "nohostport"},
        {"compression": "gzip"},
        {"max_batch": 0},
        {"message_timeout_ms": 1_000},
        {"max_skew_s": 0},
    ],
)
def test_nonsense_settings_are_refused(fields: dict[str, object]) -> None:
    """A configuration that cannot work fails at start, not at the first call."""
    with pytest.raises(ValueError):
        IngestConfig(**fields)  # type: ignore[arg-type]
