from lus.biomarker.v1 import schema_pb2 as _schema_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class VideoFormat(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    VIDEO_FORMAT_UNSPECIFIED: _ClassVar[VideoFormat]
    VIDEO_FORMAT_MP4: _ClassVar[VideoFormat]
    VIDEO_FORMAT_AVI: _ClassVar[VideoFormat]
    VIDEO_FORMAT_GIF: _ClassVar[VideoFormat]
    VIDEO_FORMAT_MOV: _ClassVar[VideoFormat]
    VIDEO_FORMAT_MPEG: _ClassVar[VideoFormat]
    VIDEO_FORMAT_DICOM: _ClassVar[VideoFormat]
VIDEO_FORMAT_UNSPECIFIED: VideoFormat
VIDEO_FORMAT_MP4: VideoFormat
VIDEO_FORMAT_AVI: VideoFormat
VIDEO_FORMAT_GIF: VideoFormat
VIDEO_FORMAT_MOV: VideoFormat
VIDEO_FORMAT_MPEG: VideoFormat
VIDEO_FORMAT_DICOM: VideoFormat

class RawFrames(_message.Message):
    __slots__ = ("count", "height", "width", "channels", "pixels", "fps")
    COUNT_FIELD_NUMBER: _ClassVar[int]
    HEIGHT_FIELD_NUMBER: _ClassVar[int]
    WIDTH_FIELD_NUMBER: _ClassVar[int]
    CHANNELS_FIELD_NUMBER: _ClassVar[int]
    PIXELS_FIELD_NUMBER: _ClassVar[int]
    FPS_FIELD_NUMBER: _ClassVar[int]
    count: int
    height: int
    width: int
    channels: int
    pixels: bytes
    fps: float
    def __init__(self, count: _Optional[int] = ..., height: _Optional[int] = ..., width: _Optional[int] = ..., channels: _Optional[int] = ..., pixels: _Optional[bytes] = ..., fps: _Optional[float] = ...) -> None: ...

class ExtractRequest(_message.Message):
    __slots__ = ("video", "frames", "format", "model_version")
    VIDEO_FIELD_NUMBER: _ClassVar[int]
    FRAMES_FIELD_NUMBER: _ClassVar[int]
    FORMAT_FIELD_NUMBER: _ClassVar[int]
    MODEL_VERSION_FIELD_NUMBER: _ClassVar[int]
    video: bytes
    frames: RawFrames
    format: VideoFormat
    model_version: str
    def __init__(self, video: _Optional[bytes] = ..., frames: _Optional[_Union[RawFrames, _Mapping]] = ..., format: _Optional[_Union[VideoFormat, str]] = ..., model_version: _Optional[str] = ...) -> None: ...

class ExtractHeader(_message.Message):
    __slots__ = ("format", "total_bytes", "model_version")
    FORMAT_FIELD_NUMBER: _ClassVar[int]
    TOTAL_BYTES_FIELD_NUMBER: _ClassVar[int]
    MODEL_VERSION_FIELD_NUMBER: _ClassVar[int]
    format: VideoFormat
    total_bytes: int
    model_version: str
    def __init__(self, format: _Optional[_Union[VideoFormat, str]] = ..., total_bytes: _Optional[int] = ..., model_version: _Optional[str] = ...) -> None: ...

class ExtractChunk(_message.Message):
    __slots__ = ("header", "data")
    HEADER_FIELD_NUMBER: _ClassVar[int]
    DATA_FIELD_NUMBER: _ClassVar[int]
    header: ExtractHeader
    data: bytes
    def __init__(self, header: _Optional[_Union[ExtractHeader, _Mapping]] = ..., data: _Optional[bytes] = ...) -> None: ...

class VideoSummary(_message.Message):
    __slots__ = ("frames", "height", "width", "fps")
    FRAMES_FIELD_NUMBER: _ClassVar[int]
    HEIGHT_FIELD_NUMBER: _ClassVar[int]
    WIDTH_FIELD_NUMBER: _ClassVar[int]
    FPS_FIELD_NUMBER: _ClassVar[int]
    frames: int
    height: int
    width: int
    fps: float
    def __init__(self, frames: _Optional[int] = ..., height: _Optional[int] = ..., width: _Optional[int] = ..., fps: _Optional[float] = ...) -> None: ...

class ModelProvenance(_message.Message):
    __slots__ = ("model_version", "architecture", "training_data", "created_at", "clinical_use", "notice")
    MODEL_VERSION_FIELD_NUMBER: _ClassVar[int]
    ARCHITECTURE_FIELD_NUMBER: _ClassVar[int]
    TRAINING_DATA_FIELD_NUMBER: _ClassVar[int]
    CREATED_AT_FIELD_NUMBER: _ClassVar[int]
    CLINICAL_USE_FIELD_NUMBER: _ClassVar[int]
    NOTICE_FIELD_NUMBER: _ClassVar[int]
    model_version: str
    architecture: str
    training_data: str
    created_at: str
    clinical_use: bool
    notice: str
    def __init__(self, model_version: _Optional[str] = ..., architecture: _Optional[str] = ..., training_data: _Optional[str] = ..., created_at: _Optional[str] = ..., clinical_use: _Optional[bool] = ..., notice: _Optional[str] = ...) -> None: ...

class ExtractResponse(_message.Message):
    __slots__ = ("vector", "clip_vectors", "model", "video", "pixel_hash", "cached", "sop_instance_uid", "content_sha256")
    VECTOR_FIELD_NUMBER: _ClassVar[int]
    CLIP_VECTORS_FIELD_NUMBER: _ClassVar[int]
    MODEL_FIELD_NUMBER: _ClassVar[int]
    VIDEO_FIELD_NUMBER: _ClassVar[int]
    PIXEL_HASH_FIELD_NUMBER: _ClassVar[int]
    CACHED_FIELD_NUMBER: _ClassVar[int]
    SOP_INSTANCE_UID_FIELD_NUMBER: _ClassVar[int]
    CONTENT_SHA256_FIELD_NUMBER: _ClassVar[int]
    vector: _schema_pb2.BiomarkerVector
    clip_vectors: _containers.RepeatedCompositeFieldContainer[_schema_pb2.BiomarkerVector]
    model: ModelProvenance
    video: VideoSummary
    pixel_hash: str
    cached: bool
    sop_instance_uid: str
    content_sha256: str
    def __init__(self, vector: _Optional[_Union[_schema_pb2.BiomarkerVector, _Mapping]] = ..., clip_vectors: _Optional[_Iterable[_Union[_schema_pb2.BiomarkerVector, _Mapping]]] = ..., model: _Optional[_Union[ModelProvenance, _Mapping]] = ..., video: _Optional[_Union[VideoSummary, _Mapping]] = ..., pixel_hash: _Optional[str] = ..., cached: _Optional[bool] = ..., sop_instance_uid: _Optional[str] = ..., content_sha256: _Optional[str] = ...) -> None: ...

class LookupRequest(_message.Message):
    __slots__ = ("pixel_hash", "sop_instance_uid", "content_sha256", "model_version")
    PIXEL_HASH_FIELD_NUMBER: _ClassVar[int]
    SOP_INSTANCE_UID_FIELD_NUMBER: _ClassVar[int]
    CONTENT_SHA256_FIELD_NUMBER: _ClassVar[int]
    MODEL_VERSION_FIELD_NUMBER: _ClassVar[int]
    pixel_hash: str
    sop_instance_uid: str
    content_sha256: str
    model_version: str
    def __init__(self, pixel_hash: _Optional[str] = ..., sop_instance_uid: _Optional[str] = ..., content_sha256: _Optional[str] = ..., model_version: _Optional[str] = ...) -> None: ...

class LookupResponse(_message.Message):
    __slots__ = ("found", "result")
    FOUND_FIELD_NUMBER: _ClassVar[int]
    RESULT_FIELD_NUMBER: _ClassVar[int]
    found: bool
    result: ExtractResponse
    def __init__(self, found: _Optional[bool] = ..., result: _Optional[_Union[ExtractResponse, _Mapping]] = ...) -> None: ...

class GetModelInfoRequest(_message.Message):
    __slots__ = ("model_version",)
    MODEL_VERSION_FIELD_NUMBER: _ClassVar[int]
    model_version: str
    def __init__(self, model_version: _Optional[str] = ...) -> None: ...

class InputSpec(_message.Message):
    __slots__ = ("frames_per_clip", "height", "width", "clips", "mean", "std", "crop")
    FRAMES_PER_CLIP_FIELD_NUMBER: _ClassVar[int]
    HEIGHT_FIELD_NUMBER: _ClassVar[int]
    WIDTH_FIELD_NUMBER: _ClassVar[int]
    CLIPS_FIELD_NUMBER: _ClassVar[int]
    MEAN_FIELD_NUMBER: _ClassVar[int]
    STD_FIELD_NUMBER: _ClassVar[int]
    CROP_FIELD_NUMBER: _ClassVar[int]
    frames_per_clip: int
    height: int
    width: int
    clips: int
    mean: _containers.RepeatedScalarFieldContainer[float]
    std: _containers.RepeatedScalarFieldContainer[float]
    crop: str
    def __init__(self, frames_per_clip: _Optional[int] = ..., height: _Optional[int] = ..., width: _Optional[int] = ..., clips: _Optional[int] = ..., mean: _Optional[_Iterable[float]] = ..., std: _Optional[_Iterable[float]] = ..., crop: _Optional[str] = ...) -> None: ...

class ModelInfo(_message.Message):
    __slots__ = ("schema", "model", "input", "served_versions")
    SCHEMA_FIELD_NUMBER: _ClassVar[int]
    MODEL_FIELD_NUMBER: _ClassVar[int]
    INPUT_FIELD_NUMBER: _ClassVar[int]
    SERVED_VERSIONS_FIELD_NUMBER: _ClassVar[int]
    schema: _schema_pb2.BiomarkerSchema
    model: ModelProvenance
    input: InputSpec
    served_versions: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, schema: _Optional[_Union[_schema_pb2.BiomarkerSchema, _Mapping]] = ..., model: _Optional[_Union[ModelProvenance, _Mapping]] = ..., input: _Optional[_Union[InputSpec, _Mapping]] = ..., served_versions: _Optional[_Iterable[str]] = ...) -> None: ...
