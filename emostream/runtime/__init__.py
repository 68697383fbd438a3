"""What every EmoStream service shares: logging, gRPC serving and shutdown."""

from emostream.runtime.logs import configure_logging
from emostream.runtime.serving import (
    CHANNEL_OPTIONS,
    SERVER_OPTIONS,
    add_standard_services,
    new_server,
    serve_until_signalled,
)

__all__ = [
    "CHANNEL_OPTIONS",
    "SERVER_OPTIONS",
    "add_standard_services",
    "configure_logging",
    "new_server",
    "serve_until_signalled",
]
