"""The ingest service's errors and the one table that maps them to gRPC codes."""

from __future__ import annotations

import grpc


class IngestError(Exception):
    """Base of every error the ingest service reports to its callers."""


class InvalidField(IngestError):
    """A request field is missing or malformed; the caller must fix it."""

    def __init__(self, field: str, reason: str) -> None:
        super().__init__(f"{field}: {reason}")
        self.field = field
        self.reason = reason


class QueueFull(IngestError):
    """The local producer queue is full; the caller may retry shortly."""


class BrokerUnavailable(IngestError):
    """Kafka cannot be reached; new taps are refused until it answers again."""


_STATUS: dict[type[IngestError], grpc.StatusCode] = {
    InvalidField: grpc.StatusCode.INVALID_ARGUMENT,
    QueueFull: grpc.StatusCode.RESOURCE_EXHAUSTED,
    BrokerUnavailable: grpc.StatusCode.UNAVAILABLE,
}

GENERIC_MESSAGE = "internal error"


def status_for(exc: BaseException) -> tuple[grpc.StatusCode, str]:
    """The gRPC code and message for ``exc``.

    Errors outside the table become INTERNAL with a generic message, so no
    internals reach the caller; the servicer logs them in full.
    """
    for kind, code in _STATUS.items():
        if isinstance(exc, kind):
            return code, str(exc)
    return grpc.StatusCode.INTERNAL, GENERIC_MESSAGE
