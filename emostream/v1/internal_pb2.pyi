import datetime

from emostream.v1 import emostream_pb2 as _emostream_pb2
from google.protobuf import timestamp_pb2 as _timestamp_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class EmojiEvent(_message.Message):
    __slots__ = ("match_id", "user_id", "emoji_type", "tapped_at", "received_at")
    MATCH_ID_FIELD_NUMBER: _ClassVar[int]
    USER_ID_FIELD_NUMBER: _ClassVar[int]
    EMOJI_TYPE_FIELD_NUMBER: _ClassVar[int]
    TAPPED_AT_FIELD_NUMBER: _ClassVar[int]
    RECEIVED_AT_FIELD_NUMBER: _ClassVar[int]
    match_id: str
    user_id: str
    emoji_type: str
    tapped_at: _timestamp_pb2.Timestamp
    received_at: _timestamp_pb2.Timestamp
    def __init__(self, match_id: _Optional[str] = ..., user_id: _Optional[str] = ..., emoji_type: _Optional[str] = ..., tapped_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., received_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ...) -> None: ...

class SwarmRecord(_message.Message):
    __slots__ = ("match_id", "query_id", "batch_id", "window_start", "window_end", "emojis", "total", "taps")
    MATCH_ID_FIELD_NUMBER: _ClassVar[int]
    QUERY_ID_FIELD_NUMBER: _ClassVar[int]
    BATCH_ID_FIELD_NUMBER: _ClassVar[int]
    WINDOW_START_FIELD_NUMBER: _ClassVar[int]
    WINDOW_END_FIELD_NUMBER: _ClassVar[int]
    EMOJIS_FIELD_NUMBER: _ClassVar[int]
    TOTAL_FIELD_NUMBER: _ClassVar[int]
    TAPS_FIELD_NUMBER: _ClassVar[int]
    match_id: str
    query_id: str
    batch_id: int
    window_start: _timestamp_pb2.Timestamp
    window_end: _timestamp_pb2.Timestamp
    emojis: _containers.RepeatedCompositeFieldContainer[_emostream_pb2.EmojiCount]
    total: int
    taps: _containers.RepeatedCompositeFieldContainer[_emostream_pb2.TapBucket]
    def __init__(self, match_id: _Optional[str] = ..., query_id: _Optional[str] = ..., batch_id: _Optional[int] = ..., window_start: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., window_end: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., emojis: _Optional[_Iterable[_Union[_emostream_pb2.EmojiCount, _Mapping]]] = ..., total: _Optional[int] = ..., taps: _Optional[_Iterable[_Union[_emostream_pb2.TapBucket, _Mapping]]] = ...) -> None: ...

class FollowRequest(_message.Message):
    __slots__ = ("follower_id", "resume_after_relay_seq")
    FOLLOWER_ID_FIELD_NUMBER: _ClassVar[int]
    RESUME_AFTER_RELAY_SEQ_FIELD_NUMBER: _ClassVar[int]
    follower_id: str
    resume_after_relay_seq: int
    def __init__(self, follower_id: _Optional[str] = ..., resume_after_relay_seq: _Optional[int] = ...) -> None: ...

class RelayMessage(_message.Message):
    __slots__ = ("relay_seq", "history_gap", "swarm", "log_id")
    RELAY_SEQ_FIELD_NUMBER: _ClassVar[int]
    HISTORY_GAP_FIELD_NUMBER: _ClassVar[int]
    SWARM_FIELD_NUMBER: _ClassVar[int]
    LOG_ID_FIELD_NUMBER: _ClassVar[int]
    relay_seq: int
    history_gap: bool
    swarm: _emostream_pb2.Swarm
    log_id: str
    def __init__(self, relay_seq: _Optional[int] = ..., history_gap: _Optional[bool] = ..., swarm: _Optional[_Union[_emostream_pb2.Swarm, _Mapping]] = ..., log_id: _Optional[str] = ...) -> None: ...
