"""Per-match sequencing of the aggregator's swarm records.

The aggregator replays a micro-batch after a crash with the same
(query_id, batch_id). A record whose batch_id is not above the last one seen
for its match under the same query_id is such a replay and is dropped; a new
query_id (a new checkpoint) starts the match's batch tracking afresh. Every
accepted record gets the match's next seq: 1, 2, ... without gaps.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass
class MatchPosition:
    """What the sequencer remembers of one match."""

    seq: int = 0
    query_id: str = ""
    batch_id: int = -1


class Sequencer:
    """Decides which records are new and numbers them per match."""

    def __init__(self, matches: dict[str, MatchPosition] | None = None) -> None:
        self.matches: dict[str, MatchPosition] = matches or {}

    def next_seq(self, match_id: str, query_id: str, batch_id: int) -> int | None:
        """The seq for a new record, or None when it replays a seen batch."""
        position = self.matches.get(match_id)
        if position is None:
            position = self.matches[match_id] = MatchPosition()
        elif position.query_id == query_id and batch_id <= position.batch_id:
            return None

        position.seq += 1
        position.query_id = query_id
        position.batch_id = batch_id
        return position.seq
