"""librdkafka's log lines, taken into Python logging as key=value events."""

from __future__ import annotations

import logging

# Connection chatter: while a broker is down librdkafka repeats these every
# half second; each client reports the outage once in its own terms, so
# these lines go to DEBUG.
_CONNECTION_FACILITIES = frozenset({"FAIL", "BROKERFAIL", "CONNECT", "DISCONNECT"})


class LibrdkafkaLog:
    """The ``logger`` setting of a confluent-kafka client."""

    def __init__(self, name: str) -> None:
        self._log = logging.getLogger(name)

    def log(self, level: int, fmt: str, facility: str, name: str, text: str) -> None:
        if facility in _CONNECTION_FACILITIES:
            level = logging.DEBUG
        self._log.log(level, "kafka.log facility=%s message=%r", facility, text)
