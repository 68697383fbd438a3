"""The main publisher's durable state, written atomically to its state folder.

One file holds the per-match positions, the relay log's id and newest
relay_seq, and the kept relay messages. It is written (temporary file, fsync,
rename, fsync of the folder) before Kafka offsets are committed, so after a
crash the records read again are recognised as replays and no seq or
relay_seq is ever given to a different swarm.
"""

from __future__ import annotations

import base64
import json
import os
import pathlib
from dataclasses import dataclass, field

from google.protobuf.message import DecodeError

from emostream.v1 import internal_pb2
from publisher_svc.sequencer import MatchPosition

STATE_FILE = "publisher-state.json"
FORMAT_VERSION = 1


class StateError(RuntimeError):
    """The state file exists but cannot be read; starting afresh would reuse seqs."""


@dataclass
class PublisherState:
    log_id: str
    newest_relay_seq: int = 0
    matches: dict[str, MatchPosition] = field(default_factory=dict)
    history: list[internal_pb2.RelayMessage] = field(default_factory=list)


class StateStore:
    """Reads and writes ``PublisherState`` in one folder."""

    def __init__(self, state_dir: pathlib.Path) -> None:
        self._dir = state_dir
        self._path = state_dir / STATE_FILE

    def load(self) -> PublisherState | None:
        """The saved state, or None when nothing was ever saved."""
        try:
            text = self._path.read_text()
        except FileNotFoundError:
            return None
        try:
            return _decode(json.loads(text))
        except (ValueError, KeyError, TypeError, DecodeError) as exc:
            raise StateError(f"unreadable state file {self._path}: {exc}") from exc

    def save(self, state: PublisherState) -> None:
        self._dir.mkdir(parents=True, exist_ok=True)
        data = json.dumps(_encode(state), separators=(",", ":")).encode()
        temp = self._path.with_suffix(".tmp")
        with open(temp, "wb") as file:
            file.write(data)
            file.flush()
            os.fsync(file.fileno())
        os.replace(temp, self._path)
        dir_fd = os.open(self._dir, os.O_RDONLY)
        try:
            os.fsync(dir_fd)
        finally:
            os.close(dir_fd)


def _encode(state: PublisherState) -> dict[str, object]:
    return {
        "version": FORMAT_VERSION,
        "log_id": state.log_id,
        "newest_relay_seq": state.newest_relay_seq,
        "matches": {
            match_id: [p.seq, p.query_id, p.batch_id]
            for match_id, p in state.matches.items()
        },
        "history": [
            base64.b64encode(m.SerializeToString()).decode() for m in state.history
        ],
    }


def _decode(data: dict) -> PublisherState:
    if data["version"] != FORMAT_VERSION:
        raise ValueError(f"unknown version {data['version']}")
    return PublisherState(
        log_id=str(data["log_id"]),
        newest_relay_seq=int(data["newest_relay_seq"]),
        matches={
            match_id: MatchPosition(int(seq), str(query_id), int(batch_id))
            for match_id, (seq, query_id, batch_id) in data["matches"].items()
        },
        history=[
            internal_pb2.RelayMessage.FromString(base64.b64decode(m))
            for m in data["history"]
        ],
    )
