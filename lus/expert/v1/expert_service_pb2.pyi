from lus.biomarker.v1 import schema_pb2 as _schema_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class PredictRequest(_message.Message):
    __slots__ = ("task", "version", "vector")
    TASK_FIELD_NUMBER: _ClassVar[int]
    VERSION_FIELD_NUMBER: _ClassVar[int]
    VECTOR_FIELD_NUMBER: _ClassVar[int]
    task: str
    version: int
    vector: _schema_pb2.BiomarkerVector
    def __init__(self, task: _Optional[str] = ..., version: _Optional[int] = ..., vector: _Optional[_Union[_schema_pb2.BiomarkerVector, _Mapping]] = ...) -> None: ...

class ClassProbability(_message.Message):
    __slots__ = ("label", "probability")
    LABEL_FIELD_NUMBER: _ClassVar[int]
    PROBABILITY_FIELD_NUMBER: _ClassVar[int]
    label: str
    probability: float
    def __init__(self, label: _Optional[str] = ..., probability: _Optional[float] = ...) -> None: ...

class PredictResponse(_message.Message):
    __slots__ = ("task", "version", "label", "probabilities", "notice")
    TASK_FIELD_NUMBER: _ClassVar[int]
    VERSION_FIELD_NUMBER: _ClassVar[int]
    LABEL_FIELD_NUMBER: _ClassVar[int]
    PROBABILITIES_FIELD_NUMBER: _ClassVar[int]
    NOTICE_FIELD_NUMBER: _ClassVar[int]
    task: str
    version: int
    label: str
    probabilities: _containers.RepeatedCompositeFieldContainer[ClassProbability]
    notice: str
    def __init__(self, task: _Optional[str] = ..., version: _Optional[int] = ..., label: _Optional[str] = ..., probabilities: _Optional[_Iterable[_Union[ClassProbability, _Mapping]]] = ..., notice: _Optional[str] = ...) -> None: ...

class ListTasksRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class TaskSummary(_message.Message):
    __slots__ = ("task", "latest_version", "schema_id", "classes", "description")
    TASK_FIELD_NUMBER: _ClassVar[int]
    LATEST_VERSION_FIELD_NUMBER: _ClassVar[int]
    SCHEMA_ID_FIELD_NUMBER: _ClassVar[int]
    CLASSES_FIELD_NUMBER: _ClassVar[int]
    DESCRIPTION_FIELD_NUMBER: _ClassVar[int]
    task: str
    latest_version: int
    schema_id: str
    classes: _containers.RepeatedScalarFieldContainer[str]
    description: str
    def __init__(self, task: _Optional[str] = ..., latest_version: _Optional[int] = ..., schema_id: _Optional[str] = ..., classes: _Optional[_Iterable[str]] = ..., description: _Optional[str] = ...) -> None: ...

class ListTasksResponse(_message.Message):
    __slots__ = ("tasks",)
    TASKS_FIELD_NUMBER: _ClassVar[int]
    tasks: _containers.RepeatedCompositeFieldContainer[TaskSummary]
    def __init__(self, tasks: _Optional[_Iterable[_Union[TaskSummary, _Mapping]]] = ...) -> None: ...

class GetTaskRequest(_message.Message):
    __slots__ = ("task", "version")
    TASK_FIELD_NUMBER: _ClassVar[int]
    VERSION_FIELD_NUMBER: _ClassVar[int]
    task: str
    version: int
    def __init__(self, task: _Optional[str] = ..., version: _Optional[int] = ...) -> None: ...

class TaskCard(_message.Message):
    __slots__ = ("task", "version", "schema_id", "classes", "model_family", "metrics", "created_at", "owner", "description", "versions", "training_data", "notice", "sha256")
    class MetricsEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: float
        def __init__(self, key: _Optional[str] = ..., value: _Optional[float] = ...) -> None: ...
    TASK_FIELD_NUMBER: _ClassVar[int]
    VERSION_FIELD_NUMBER: _ClassVar[int]
    SCHEMA_ID_FIELD_NUMBER: _ClassVar[int]
    CLASSES_FIELD_NUMBER: _ClassVar[int]
    MODEL_FAMILY_FIELD_NUMBER: _ClassVar[int]
    METRICS_FIELD_NUMBER: _ClassVar[int]
    CREATED_AT_FIELD_NUMBER: _ClassVar[int]
    OWNER_FIELD_NUMBER: _ClassVar[int]
    DESCRIPTION_FIELD_NUMBER: _ClassVar[int]
    VERSIONS_FIELD_NUMBER: _ClassVar[int]
    TRAINING_DATA_FIELD_NUMBER: _ClassVar[int]
    NOTICE_FIELD_NUMBER: _ClassVar[int]
    SHA256_FIELD_NUMBER: _ClassVar[int]
    task: str
    version: int
    schema_id: str
    classes: _containers.RepeatedScalarFieldContainer[str]
    model_family: str
    metrics: _containers.ScalarMap[str, float]
    created_at: str
    owner: str
    description: str
    versions: _containers.RepeatedScalarFieldContainer[int]
    training_data: str
    notice: str
    sha256: str
    def __init__(self, task: _Optional[str] = ..., version: _Optional[int] = ..., schema_id: _Optional[str] = ..., classes: _Optional[_Iterable[str]] = ..., model_family: _Optional[str] = ..., metrics: _Optional[_Mapping[str, float]] = ..., created_at: _Optional[str] = ..., owner: _Optional[str] = ..., description: _Optional[str] = ..., versions: _Optional[_Iterable[int]] = ..., training_data: _Optional[str] = ..., notice: _Optional[str] = ..., sha256: _Optional[str] = ...) -> None: ...
