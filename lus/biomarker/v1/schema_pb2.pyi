from google.protobuf.internal import containers as _containers
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class Biomarker(_message.Message):
    __slots__ = ("key", "group", "label")
    KEY_FIELD_NUMBER: _ClassVar[int]
    GROUP_FIELD_NUMBER: _ClassVar[int]
    LABEL_FIELD_NUMBER: _ClassVar[int]
    key: str
    group: str
    label: str
    def __init__(self, key: _Optional[str] = ..., group: _Optional[str] = ..., label: _Optional[str] = ...) -> None: ...

class BiomarkerGroup(_message.Message):
    __slots__ = ("key", "display_name")
    KEY_FIELD_NUMBER: _ClassVar[int]
    DISPLAY_NAME_FIELD_NUMBER: _ClassVar[int]
    key: str
    display_name: str
    def __init__(self, key: _Optional[str] = ..., display_name: _Optional[str] = ...) -> None: ...

class BiomarkerSchema(_message.Message):
    __slots__ = ("schema_id", "name", "groups", "biomarkers", "version")
    SCHEMA_ID_FIELD_NUMBER: _ClassVar[int]
    NAME_FIELD_NUMBER: _ClassVar[int]
    GROUPS_FIELD_NUMBER: _ClassVar[int]
    BIOMARKERS_FIELD_NUMBER: _ClassVar[int]
    VERSION_FIELD_NUMBER: _ClassVar[int]
    schema_id: str
    name: str
    groups: _containers.RepeatedCompositeFieldContainer[BiomarkerGroup]
    biomarkers: _containers.RepeatedCompositeFieldContainer[Biomarker]
    version: int
    def __init__(self, schema_id: _Optional[str] = ..., name: _Optional[str] = ..., groups: _Optional[_Iterable[_Union[BiomarkerGroup, _Mapping]]] = ..., biomarkers: _Optional[_Iterable[_Union[Biomarker, _Mapping]]] = ..., version: _Optional[int] = ...) -> None: ...

class BiomarkerVector(_message.Message):
    __slots__ = ("schema_id", "values", "model")
    SCHEMA_ID_FIELD_NUMBER: _ClassVar[int]
    VALUES_FIELD_NUMBER: _ClassVar[int]
    MODEL_FIELD_NUMBER: _ClassVar[int]
    schema_id: str
    values: _containers.RepeatedScalarFieldContainer[float]
    model: ModelRef
    def __init__(self, schema_id: _Optional[str] = ..., values: _Optional[_Iterable[float]] = ..., model: _Optional[_Union[ModelRef, _Mapping]] = ...) -> None: ...

class ModelRef(_message.Message):
    __slots__ = ("version", "artifact_sha256", "precision")
    VERSION_FIELD_NUMBER: _ClassVar[int]
    ARTIFACT_SHA256_FIELD_NUMBER: _ClassVar[int]
    PRECISION_FIELD_NUMBER: _ClassVar[int]
    version: str
    artifact_sha256: str
    precision: str
    def __init__(self, version: _Optional[str] = ..., artifact_sha256: _Optional[str] = ..., precision: _Optional[str] = ...) -> None: ...
