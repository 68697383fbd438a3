"""Checks a viewer's tap and turns it into the event written to Kafka.

Every failure raises ``InvalidField`` naming the field at fault.
"""

from __future__ import annotations

import re

import emoji
import regex
from google.protobuf.timestamp_pb2 import Timestamp

from emostream.v1 import emostream_pb2, internal_pb2
from ingest_svc.errors import InvalidField

ID_MAX_CHARS = 64
_ID_PATTERN = re.compile(r"[A-Za-z0-9_.:-]+")
_GRAPHEME = regex.compile(r"\X")

# The longest emoji in the Unicode data is 10 code points (a tag-sequence
# flag); anything much longer is refused before grapheme segmentation.
_EMOJI_MAX_CODE_POINTS = 16


def _canonical_forms() -> dict[str, str]:
    """Maps every emoji sequence in the Unicode data to its fully-qualified form.

    Unqualified and minimally-qualified sequences (e.g. a heart without the
    VS16 selector, or a keycap without it) share the CLDR name of their
    fully-qualified form. Components (skin tones, hair styles) are emojis
    only inside a sequence, so they are left out.
    """
    fully = emoji.STATUS["fully_qualified"]
    component = emoji.STATUS["component"]
    by_name = {
        data["en"]: sequence
        for sequence, data in emoji.EMOJI_DATA.items()
        if data["status"] == fully
    }
    return {
        sequence: by_name[data["en"]]
        for sequence, data in emoji.EMOJI_DATA.items()
        if data["status"] != component
    }


CANONICAL_EMOJI = _canonical_forms()
_COMPONENTS = frozenset(
    sequence
    for sequence, data in emoji.EMOJI_DATA.items()
    if data["status"] == emoji.STATUS["component"]
)


def check_id(field: str, value: str) -> str:
    """Returns ``value`` if it is 1-64 characters of [A-Za-z0-9_.:-]."""
    if not value:
        raise InvalidField(field, "is required")
    if len(value) > ID_MAX_CHARS:
        raise InvalidField(field, f"must be at most {ID_MAX_CHARS} characters")
    if not _ID_PATTERN.fullmatch(value):
        raise InvalidField(field, "may contain only A-Z a-z 0-9 _ . : -")
    return value


def canonical_emoji(text: str) -> str:
    """The fully-qualified form of ``text``, which must be exactly one emoji."""
    # Every key of CANONICAL_EMOJI is one grapheme without whitespace (a unit
    # test holds it to that), so a hit needs none of the checks below.
    canonical = CANONICAL_EMOJI.get(text)
    if canonical is not None:
        return canonical
    field = "emoji_type"
    if not text:
        raise InvalidField(field, "is required")
    if text.strip() != text:
        raise InvalidField(field, "must not have whitespace around the emoji")
    if len(text) > _EMOJI_MAX_CODE_POINTS:
        raise InvalidField(field, "must be exactly one emoji")

    graphemes = len(_GRAPHEME.findall(text))
    if graphemes != 1:
        raise InvalidField(
            field, f"must be exactly one emoji, got {graphemes} characters"
        )
    if text in _COMPONENTS:
        raise InvalidField(field, "a skin tone or hair component alone is no emoji")
    raise InvalidField(field, "is not an emoji")


def check_timestamp(
    request: emostream_pb2.SendEmojiRequest, *, now_s: float, max_skew_s: float
) -> Timestamp:
    """Returns the tap time if it is set and within ``max_skew_s`` of ``now_s``."""
    field = "timestamp"
    if not request.HasField("timestamp"):
        raise InvalidField(field, "is required")
    tapped = request.timestamp
    if not 0 <= tapped.nanos < 1_000_000_000:
        raise InvalidField(field, "nanos must be within 0..999999999")

    skew_s = tapped.seconds + tapped.nanos / 1e9 - now_s
    if skew_s > max_skew_s:
        raise InvalidField(
            field, f"is {skew_s:.0f} s ahead of the server clock (max {max_skew_s} s)"
        )
    if skew_s < -max_skew_s:
        raise InvalidField(
            field, f"is {-skew_s:.0f} s behind the server clock (max {max_skew_s} s)"
        )
    return tapped


def to_event(
    request: emostream_pb2.SendEmojiRequest, *, now_s: float, max_skew_s: float
) -> internal_pb2.EmojiEvent:
    """Validates one tap; the event carries the canonical emoji and both times."""
    event = internal_pb2.EmojiEvent(
        match_id=check_id("match_id", request.match_id),
        user_id=check_id("user_id", request.user_id),
        emoji_type=canonical_emoji(request.emoji_type),
    )
    event.tapped_at.CopyFrom(
        check_timestamp(request, now_s=now_s, max_skew_s=max_skew_s)
    )
    event.received_at.FromNanoseconds(int(now_s * 1e9))
    return event
