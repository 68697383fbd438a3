import datetime

from google.api import annotations_pb2 as _annotations_pb2
from google.protobuf import timestamp_pb2 as _timestamp_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class Notice(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    NOTICE_SWARM: _ClassVar[Notice]
    NOTICE_HEARTBEAT: _ClassVar[Notice]
    NOTICE_HISTORY_GAP: _ClassVar[Notice]
    NOTICE_DRAINING: _ClassVar[Notice]
NOTICE_SWARM: Notice
NOTICE_HEARTBEAT: Notice
NOTICE_HISTORY_GAP: Notice
NOTICE_DRAINING: Notice

class SendEmojiRequest(_message.Message):
    __slots__ = ("match_id", "user_id", "emoji_type", "timestamp")
    MATCH_ID_FIELD_NUMBER: _ClassVar[int]
    USER_ID_FIELD_NUMBER: _ClassVar[int]
    EMOJI_TYPE_FIELD_NUMBER: _ClassVar[int]
    TIMESTAMP_FIELD_NUMBER: _ClassVar[int]
    match_id: str
    user_id: str
    emoji_type: str
    timestamp: _timestamp_pb2.Timestamp
    def __init__(self, match_id: _Optional[str] = ..., user_id: _Optional[str] = ..., emoji_type: _Optional[str] = ..., timestamp: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ...) -> None: ...

class SendEmojiResponse(_message.Message):
    __slots__ = ("emoji_type",)
    EMOJI_TYPE_FIELD_NUMBER: _ClassVar[int]
    emoji_type: str
    def __init__(self, emoji_type: _Optional[str] = ...) -> None: ...

class SendEmojisRequest(_message.Message):
    __slots__ = ("emojis",)
    EMOJIS_FIELD_NUMBER: _ClassVar[int]
    emojis: _containers.RepeatedCompositeFieldContainer[SendEmojiRequest]
    def __init__(self, emojis: _Optional[_Iterable[_Union[SendEmojiRequest, _Mapping]]] = ...) -> None: ...

class SendEmojisResponse(_message.Message):
    __slots__ = ("accepted", "rejected")
    ACCEPTED_FIELD_NUMBER: _ClassVar[int]
    REJECTED_FIELD_NUMBER: _ClassVar[int]
    accepted: int
    rejected: _containers.RepeatedCompositeFieldContainer[RejectedEmoji]
    def __init__(self, accepted: _Optional[int] = ..., rejected: _Optional[_Iterable[_Union[RejectedEmoji, _Mapping]]] = ...) -> None: ...

class RejectedEmoji(_message.Message):
    __slots__ = ("index", "field", "reason")
    INDEX_FIELD_NUMBER: _ClassVar[int]
    FIELD_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    index: int
    field: str
    reason: str
    def __init__(self, index: _Optional[int] = ..., field: _Optional[str] = ..., reason: _Optional[str] = ...) -> None: ...

class SubscribeRequest(_message.Message):
    __slots__ = ("match_id", "viewer_id", "resume_after_seq")
    MATCH_ID_FIELD_NUMBER: _ClassVar[int]
    VIEWER_ID_FIELD_NUMBER: _ClassVar[int]
    RESUME_AFTER_SEQ_FIELD_NUMBER: _ClassVar[int]
    match_id: str
    viewer_id: str
    resume_after_seq: int
    def __init__(self, match_id: _Optional[str] = ..., viewer_id: _Optional[str] = ..., resume_after_seq: _Optional[int] = ...) -> None: ...

class EmojiCount(_message.Message):
    __slots__ = ("emoji", "raw", "shown")
    EMOJI_FIELD_NUMBER: _ClassVar[int]
    RAW_FIELD_NUMBER: _ClassVar[int]
    SHOWN_FIELD_NUMBER: _ClassVar[int]
    emoji: str
    raw: int
    shown: int
    def __init__(self, emoji: _Optional[str] = ..., raw: _Optional[int] = ..., shown: _Optional[int] = ...) -> None: ...

class TapBucket(_message.Message):
    __slots__ = ("start_unix_ms", "count")
    START_UNIX_MS_FIELD_NUMBER: _ClassVar[int]
    COUNT_FIELD_NUMBER: _ClassVar[int]
    start_unix_ms: int
    count: int
    def __init__(self, start_unix_ms: _Optional[int] = ..., count: _Optional[int] = ...) -> None: ...

class Swarm(_message.Message):
    __slots__ = ("match_id", "seq", "first_seq", "notice", "window_start", "window_end", "emojis", "total", "viewers", "published_at", "taps")
    MATCH_ID_FIELD_NUMBER: _ClassVar[int]
    SEQ_FIELD_NUMBER: _ClassVar[int]
    FIRST_SEQ_FIELD_NUMBER: _ClassVar[int]
    NOTICE_FIELD_NUMBER: _ClassVar[int]
    WINDOW_START_FIELD_NUMBER: _ClassVar[int]
    WINDOW_END_FIELD_NUMBER: _ClassVar[int]
    EMOJIS_FIELD_NUMBER: _ClassVar[int]
    TOTAL_FIELD_NUMBER: _ClassVar[int]
    VIEWERS_FIELD_NUMBER: _ClassVar[int]
    PUBLISHED_AT_FIELD_NUMBER: _ClassVar[int]
    TAPS_FIELD_NUMBER: _ClassVar[int]
    match_id: str
    seq: int
    first_seq: int
    notice: Notice
    window_start: _timestamp_pb2.Timestamp
    window_end: _timestamp_pb2.Timestamp
    emojis: _containers.RepeatedCompositeFieldContainer[EmojiCount]
    total: int
    viewers: int
    published_at: _timestamp_pb2.Timestamp
    taps: _containers.RepeatedCompositeFieldContainer[TapBucket]
    def __init__(self, match_id: _Optional[str] = ..., seq: _Optional[int] = ..., first_seq: _Optional[int] = ..., notice: _Optional[_Union[Notice, str]] = ..., window_start: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., window_end: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., emojis: _Optional[_Iterable[_Union[EmojiCount, _Mapping]]] = ..., total: _Optional[int] = ..., viewers: _Optional[int] = ..., published_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., taps: _Optional[_Iterable[_Union[TapBucket, _Mapping]]] = ...) -> None: ...
