"""Boundary cases of tap validation: ids, the one-emoji rule, timestamps."""

from __future__ import annotations

from typing import Any

import pytest
from google.protobuf.timestamp_pb2 import Timestamp

from emostream.v1 import emostream_pb2
from ingest_svc import validation
from ingest_svc.errors import InvalidField
from ingest_svc.validation import canonical_emoji, check_id, to_event

NOW_S = 1_800_000_000.0
SKEW_S = 300.0


def _request(**fields: object) -> emostream_pb2.SendEmojiRequest:
    values: dict[str, Any] = {
        "match_id": "m-1",
        "user_id": "u-1",
        "emoji_type": "🔥",
        "timestamp": Timestamp(seconds=int(NOW_S)),
    }
    values.update(fields)
    return emostream_pb2.SendEmojiRequest(
        **{k: v for k, v in values.items() if v is not None}
    )


# Ids ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    "value",
    ["a", "A" * 64, "match_2026.final:IND-AUS", "0", "-", "a.b:c_d-e"],
)
def test_id_of_allowed_characters_and_length_is_accepted(value: str) -> None:
    """An id of 1-64 characters from [A-Za-z0-9_.:-] passes unchanged."""
    assert check_id("match_id", value) == value


@pytest.mark.parametrize(
    ("value", "reason"),
    [
        ("", "required"),
        ("A" * 65, "at most 64"),
        ("has space", "only"),
        ("slash/no", "only"),
        ("émile", "only"),
        ("user🔥", "only"),
        ("tab\t", "only"),
        ("semi;colon", "only"),
    ],
)
@pytest.mark.parametrize("field", ["match_id", "user_id"])
def test_bad_id_is_refused_naming_the_field(
    field: str, value: str, reason: str
) -> None:
    """Empty, too long, or foreign characters: refused, naming the field."""
    request = _request(**{field: value})

    with pytest.raises(InvalidField) as refused:
        to_event(request, now_s=NOW_S, max_skew_s=SKEW_S)

    assert refused.value.field == field
    assert reason in refused.value.reason
    assert field in str(refused.value)


# Emojis ------------------------------------------------------------------------


@pytest.mark.parametrize(
    "text",
    [
        "🔥",
        "😂",
        "👍🏿",  # skin-tone modifier sequence
        "👩🏽‍🚒",  # profession with skin tone, ZWJ sequence
        "👨‍👩‍👧‍👦",  # family, ZWJ sequence
        "🏳️‍🌈",  # flag ZWJ sequence
        "🇮🇳",  # regional-indicator flag
        "🏴󠁧󠁢󠁳󠁣󠁴󠁿",  # tag-sequence flag
        "1️⃣",  # keycap
        "#️⃣",  # keycap
        "*️⃣",  # keycap
        "❤️",  # VS16 form
    ],
)
def test_one_fully_qualified_emoji_is_kept_as_typed(text: str) -> None:
    """A single fully-qualified emoji, however many code points, is its own form."""
    assert canonical_emoji(text) == text


@pytest.mark.parametrize(
    ("typed", "canonical"),
    [
        ("❤", "❤️"),
        ("1⃣", "1️⃣"),
        ("#⃣", "#️⃣"),
        ("☺", "☺️"),
        ("👁‍🗨", "👁️‍🗨️"),
        ("⛹🏽‍♀", "⛹🏽‍♀️"),
    ],
)
def test_unqualified_emoji_is_stored_in_fully_qualified_form(
    typed: str, canonical: str
) -> None:
    """Forms without the VS16 selector count as the same emoji as with it."""
    assert canonical_emoji(typed) == canonical
    assert canonical_emoji(typed) == canonical_emoji(canonical)


@pytest.mark.parametrize(
    ("text", "reason"),
    [
        ("", "required"),
        ("ab", "exactly one"),
        ("a", "not an emoji"),
        ("1", "not an emoji"),
        ("#", "not an emoji"),
        ("🔥🔥", "exactly one"),
        ("🔥❤️", "exactly one"),
        ("👍 ", "whitespace"),
        (" 🔥", "whitespace"),
        ("\n🔥", "whitespace"),
        (" ", "whitespace"),
        ("🏿", "skin tone"),  # lone skin-tone modifier
        ("🦰", "hair"),  # lone hair component
        ("\u200d", "not an emoji"),
        ("\ufe0f", "not an emoji"),
        ("🔥" * 40, "exactly one"),
    ],
)
def test_anything_but_one_emoji_is_refused(text: str, reason: str) -> None:
    """Text, several emojis, padding or a lone component: refused on emoji_type."""
    with pytest.raises(InvalidField) as refused:
        canonical_emoji(text)

    assert refused.value.field == "emoji_type"
    assert reason in refused.value.reason


def test_event_carries_the_canonical_emoji() -> None:
    """The event written to Kafka holds the canonical emoji and both times."""
    event = to_event(_request(emoji_type="❤"), now_s=NOW_S, max_skew_s=SKEW_S)

    assert event.match_id == "m-1"
    assert event.user_id == "u-1"
    assert event.emoji_type == "❤️"
    assert event.tapped_at.seconds == int(NOW_S)
    assert event.received_at.ToNanoseconds() == int(NOW_S * 1e9)


# Timestamps --------------------------------------------------------------------


@pytest.mark.parametrize("offset_s", [-SKEW_S, -1.0, 0.0, 1.0, SKEW_S])
def test_timestamp_within_the_skew_is_accepted(offset_s: float) -> None:
    """A tap time up to max_skew_s either side of the server clock passes."""
    stamp = Timestamp()
    stamp.FromNanoseconds(int((NOW_S + offset_s) * 1e9))

    event = to_event(_request(timestamp=stamp), now_s=NOW_S, max_skew_s=SKEW_S)

    assert event.tapped_at == stamp


@pytest.mark.parametrize(
    ("offset_s", "reason"),
    [(SKEW_S + 1, "ahead"), (-SKEW_S - 1, "behind"), (-NOW_S, "behind")],
)
def test_timestamp_beyond_the_skew_is_refused(offset_s: float, reason: str) -> None:
    """A tap time too far ahead of or behind the server clock is refused."""
    stamp = Timestamp()
    stamp.FromNanoseconds(int((NOW_S + offset_s) * 1e9))

    with pytest.raises(InvalidField) as refused:
        to_event(_request(timestamp=stamp), now_s=NOW_S, max_skew_s=SKEW_S)

    assert refused.value.field == "timestamp"
    assert reason in refused.value.reason


def test_missing_timestamp_is_refused() -> None:
    """A tap without a timestamp is refused on that field."""
    with pytest.raises(InvalidField) as refused:
        to_event(_request(timestamp=None), now_s=NOW_S, max_skew_s=SKEW_S)

    assert refused.value.field == "timestamp"
    assert "required" in refused.value.reason


def test_timestamp_with_out_of_range_nanos_is_refused() -> None:
    """Nanos outside 0..999999999 make the timestamp invalid."""
    stamp = Timestamp(seconds=int(NOW_S), nanos=-5)

    with pytest.raises(InvalidField) as refused:
        to_event(_request(timestamp=stamp), now_s=NOW_S, max_skew_s=SKEW_S)

    assert refused.value.field == "timestamp"


def test_every_known_emoji_is_one_grapheme_without_whitespace() -> None:
    """What lets canonical_emoji answer a known sequence by lookup alone."""
    for sequence in validation.CANONICAL_EMOJI:
        assert len(validation._GRAPHEME.findall(sequence)) == 1, sequence
        assert sequence.strip() == sequence
        assert len(sequence) <= validation._EMOJI_MAX_CODE_POINTS
        assert sequence not in validation._COMPONENTS
