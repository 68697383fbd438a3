"""What every EmoStream service shares: logging, gRPC serving and shutdown."""

from emostream.runtime.logs import configure_logging
from emostream.runtime.serving import (
    CHANNEL_OPTIONS,
    SERVER_OPTIONS,
    add_standard_services,
    serve_until_signalled,
)

__all__ = [
    "CHANNEL_OPTIONS",
    "SERVER_OPTIONS",
    "add_standard_services",
    "configure_logging",
    "serve_until_signalled",
]
