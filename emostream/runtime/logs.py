"""Logging as events with key=value fields, one line each."""

from __future__ import annotations

import logging
import os
import sys


def configure_logging(service: str) -> None:
    """Sends the root logger to stderr; level from EMOSTREAM_LOG_LEVEL (INFO)."""
    level = os.environ.get("EMOSTREAM_LOG_LEVEL", "INFO").upper()
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(
        logging.Formatter(f"%(asctime)s %(levelname)s {service} %(name)s: %(message)s")
    )
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
