"""EmoStream's Python SDK: send emoji taps, follow a match's swarms.

async with emostream.Client("127.0.0.1:8080") as client:
    await client.send("m1", "u1", "🔥")
    async for swarm in client.subscribe("m1"):
        ...
"""

from emostream.client import (
    MAX_BATCH,
    Backoff,
    BatchResult,
    Client,
    DeadlineExceeded,
    EmoStreamError,
    InvalidArgument,
    InvalidEmoji,
    MessageTooLarge,
    Notice,
    Overloaded,
    Rejection,
    ServerError,
    Swarm,
    Tap,
    Unavailable,
    translate_error,
)

__all__ = [
    "MAX_BATCH",
    "Backoff",
    "BatchResult",
    "Client",
    "DeadlineExceeded",
    "EmoStreamError",
    "InvalidArgument",
    "InvalidEmoji",
    "MessageTooLarge",
    "Notice",
    "Overloaded",
    "Rejection",
    "ServerError",
    "Swarm",
    "Tap",
    "Unavailable",
    "translate_error",
]
