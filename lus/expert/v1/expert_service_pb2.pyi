from lus.biomarker.v1 import schema_pb2 as _schema_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class Distribution(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    DISTRIBUTION_UNASSESSED: _ClassVar[Distribution]
    DISTRIBUTION_IN: _ClassVar[Distribution]
    DISTRIBUTION_OUT: _ClassVar[Distribution]

class TrainingJobState(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    TRAINING_JOB_STATE_UNSPECIFIED: _ClassVar[TrainingJobState]
    TRAINING_JOB_STATE_QUEUED: _ClassVar[TrainingJobState]
    TRAINING_JOB_STATE_RUNNING: _ClassVar[TrainingJobState]
    TRAINING_JOB_STATE_SUCCEEDED: _ClassVar[TrainingJobState]
    TRAINING_JOB_STATE_FAILED: _ClassVar[TrainingJobState]
DISTRIBUTION_UNASSESSED: Distribution
DISTRIBUTION_IN: Distribution
DISTRIBUTION_OUT: Distribution
TRAINING_JOB_STATE_UNSPECIFIED: TrainingJobState
TRAINING_JOB_STATE_QUEUED: TrainingJobState
TRAINING_JOB_STATE_RUNNING: TrainingJobState
TRAINING_JOB_STATE_SUCCEEDED: TrainingJobState
TRAINING_JOB_STATE_FAILED: TrainingJobState

class PredictRequest(_message.Message):
    __slots__ = ("task", "version", "vector", "video_hash", "biomarker_model_version", "alias", "max_contributions")
    TASK_FIELD_NUMBER: _ClassVar[int]
    VERSION_FIELD_NUMBER: _ClassVar[int]
    VECTOR_FIELD_NUMBER: _ClassVar[int]
    VIDEO_HASH_FIELD_NUMBER: _ClassVar[int]
    BIOMARKER_MODEL_VERSION_FIELD_NUMBER: _ClassVar[int]
    ALIAS_FIELD_NUMBER: _ClassVar[int]
    MAX_CONTRIBUTIONS_FIELD_NUMBER: _ClassVar[int]
    task: str
    version: int
    vector: _schema_pb2.BiomarkerVector
    video_hash: str
    biomarker_model_version: str
    alias: str
    max_contributions: int
    def __init__(self, task: _Optional[str] = ..., version: _Optional[int] = ..., vector: _Optional[_Union[_schema_pb2.BiomarkerVector, _Mapping]] = ..., video_hash: _Optional[str] = ..., biomarker_model_version: _Optional[str] = ..., alias: _Optional[str] = ..., max_contributions: _Optional[int] = ...) -> None: ...

class Contribution(_message.Message):
    __slots__ = ("biomarker", "contribution", "value", "baseline")
    BIOMARKER_FIELD_NUMBER: _ClassVar[int]
    CONTRIBUTION_FIELD_NUMBER: _ClassVar[int]
    VALUE_FIELD_NUMBER: _ClassVar[int]
    BASELINE_FIELD_NUMBER: _ClassVar[int]
    biomarker: str
    contribution: float
    value: float
    baseline: float
    def __init__(self, biomarker: _Optional[str] = ..., contribution: _Optional[float] = ..., value: _Optional[float] = ..., baseline: _Optional[float] = ...) -> None: ...

class ClassProbability(_message.Message):
    __slots__ = ("label", "probability")
    LABEL_FIELD_NUMBER: _ClassVar[int]
    PROBABILITY_FIELD_NUMBER: _ClassVar[int]
    label: str
    probability: float
    def __init__(self, label: _Optional[str] = ..., probability: _Optional[float] = ...) -> None: ...

class PredictResponse(_message.Message):
    __slots__ = ("task", "version", "label", "probabilities", "notice", "contributions", "distribution", "ood_score", "ood_threshold", "explanation_note", "alias", "biomarker_model_version")
    TASK_FIELD_NUMBER: _ClassVar[int]
    VERSION_FIELD_NUMBER: _ClassVar[int]
    LABEL_FIELD_NUMBER: _ClassVar[int]
    PROBABILITIES_FIELD_NUMBER: _ClassVar[int]
    NOTICE_FIELD_NUMBER: _ClassVar[int]
    CONTRIBUTIONS_FIELD_NUMBER: _ClassVar[int]
    DISTRIBUTION_FIELD_NUMBER: _ClassVar[int]
    OOD_SCORE_FIELD_NUMBER: _ClassVar[int]
    OOD_THRESHOLD_FIELD_NUMBER: _ClassVar[int]
    EXPLANATION_NOTE_FIELD_NUMBER: _ClassVar[int]
    ALIAS_FIELD_NUMBER: _ClassVar[int]
    BIOMARKER_MODEL_VERSION_FIELD_NUMBER: _ClassVar[int]
    task: str
    version: int
    label: str
    probabilities: _containers.RepeatedCompositeFieldContainer[ClassProbability]
    notice: str
    contributions: _containers.RepeatedCompositeFieldContainer[Contribution]
    distribution: Distribution
    ood_score: float
    ood_threshold: float
    explanation_note: str
    alias: str
    biomarker_model_version: str
    def __init__(self, task: _Optional[str] = ..., version: _Optional[int] = ..., label: _Optional[str] = ..., probabilities: _Optional[_Iterable[_Union[ClassProbability, _Mapping]]] = ..., notice: _Optional[str] = ..., contributions: _Optional[_Iterable[_Union[Contribution, _Mapping]]] = ..., distribution: _Optional[_Union[Distribution, str]] = ..., ood_score: _Optional[float] = ..., ood_threshold: _Optional[float] = ..., explanation_note: _Optional[str] = ..., alias: _Optional[str] = ..., biomarker_model_version: _Optional[str] = ...) -> None: ...

class PredictBatchRequest(_message.Message):
    __slots__ = ("requests", "matrices")
    REQUESTS_FIELD_NUMBER: _ClassVar[int]
    MATRICES_FIELD_NUMBER: _ClassVar[int]
    requests: _containers.RepeatedCompositeFieldContainer[PredictRequest]
    matrices: _containers.RepeatedCompositeFieldContainer[VectorMatrix]
    def __init__(self, requests: _Optional[_Iterable[_Union[PredictRequest, _Mapping]]] = ..., matrices: _Optional[_Iterable[_Union[VectorMatrix, _Mapping]]] = ...) -> None: ...

class VectorMatrix(_message.Message):
    __slots__ = ("task", "version", "alias", "schema_id", "n_vectors", "values", "max_contributions", "model")
    TASK_FIELD_NUMBER: _ClassVar[int]
    VERSION_FIELD_NUMBER: _ClassVar[int]
    ALIAS_FIELD_NUMBER: _ClassVar[int]
    SCHEMA_ID_FIELD_NUMBER: _ClassVar[int]
    N_VECTORS_FIELD_NUMBER: _ClassVar[int]
    VALUES_FIELD_NUMBER: _ClassVar[int]
    MAX_CONTRIBUTIONS_FIELD_NUMBER: _ClassVar[int]
    MODEL_FIELD_NUMBER: _ClassVar[int]
    task: str
    version: int
    alias: str
    schema_id: str
    n_vectors: int
    values: _containers.RepeatedScalarFieldContainer[float]
    max_contributions: int
    model: _schema_pb2.ModelRef
    def __init__(self, task: _Optional[str] = ..., version: _Optional[int] = ..., alias: _Optional[str] = ..., schema_id: _Optional[str] = ..., n_vectors: _Optional[int] = ..., values: _Optional[_Iterable[float]] = ..., max_contributions: _Optional[int] = ..., model: _Optional[_Union[_schema_pb2.ModelRef, _Mapping]] = ...) -> None: ...

class MatrixResult(_message.Message):
    __slots__ = ("response", "error")
    RESPONSE_FIELD_NUMBER: _ClassVar[int]
    ERROR_FIELD_NUMBER: _ClassVar[int]
    response: MatrixResponse
    error: PredictError
    def __init__(self, response: _Optional[_Union[MatrixResponse, _Mapping]] = ..., error: _Optional[_Union[PredictError, _Mapping]] = ...) -> None: ...

class MatrixResponse(_message.Message):
    __slots__ = ("task", "version", "alias", "classes", "probabilities", "labels", "notice", "ood_scores", "out_of_distribution", "ood_threshold", "contributions", "contributions_per_vector", "explanation_note", "biomarker_model_version")
    TASK_FIELD_NUMBER: _ClassVar[int]
    VERSION_FIELD_NUMBER: _ClassVar[int]
    ALIAS_FIELD_NUMBER: _ClassVar[int]
    CLASSES_FIELD_NUMBER: _ClassVar[int]
    PROBABILITIES_FIELD_NUMBER: _ClassVar[int]
    LABELS_FIELD_NUMBER: _ClassVar[int]
    NOTICE_FIELD_NUMBER: _ClassVar[int]
    OOD_SCORES_FIELD_NUMBER: _ClassVar[int]
    OUT_OF_DISTRIBUTION_FIELD_NUMBER: _ClassVar[int]
    OOD_THRESHOLD_FIELD_NUMBER: _ClassVar[int]
    CONTRIBUTIONS_FIELD_NUMBER: _ClassVar[int]
    CONTRIBUTIONS_PER_VECTOR_FIELD_NUMBER: _ClassVar[int]
    EXPLANATION_NOTE_FIELD_NUMBER: _ClassVar[int]
    BIOMARKER_MODEL_VERSION_FIELD_NUMBER: _ClassVar[int]
    task: str
    version: int
    alias: str
    classes: _containers.RepeatedScalarFieldContainer[str]
    probabilities: _containers.RepeatedScalarFieldContainer[float]
    labels: _containers.RepeatedScalarFieldContainer[int]
    notice: str
    ood_scores: _containers.RepeatedScalarFieldContainer[float]
    out_of_distribution: _containers.RepeatedScalarFieldContainer[bool]
    ood_threshold: float
    contributions: _containers.RepeatedCompositeFieldContainer[Contribution]
    contributions_per_vector: int
    explanation_note: str
    biomarker_model_version: str
    def __init__(self, task: _Optional[str] = ..., version: _Optional[int] = ..., alias: _Optional[str] = ..., classes: _Optional[_Iterable[str]] = ..., probabilities: _Optional[_Iterable[float]] = ..., labels: _Optional[_Iterable[int]] = ..., notice: _Optional[str] = ..., ood_scores: _Optional[_Iterable[float]] = ..., out_of_distribution: _Optional[_Iterable[bool]] = ..., ood_threshold: _Optional[float] = ..., contributions: _Optional[_Iterable[_Union[Contribution, _Mapping]]] = ..., contributions_per_vector: _Optional[int] = ..., explanation_note: _Optional[str] = ..., biomarker_model_version: _Optional[str] = ...) -> None: ...

class PredictError(_message.Message):
    __slots__ = ("code", "message")
    CODE_FIELD_NUMBER: _ClassVar[int]
    MESSAGE_FIELD_NUMBER: _ClassVar[int]
    code: int
    message: str
    def __init__(self, code: _Optional[int] = ..., message: _Optional[str] = ...) -> None: ...

class PredictResult(_message.Message):
    __slots__ = ("response", "error")
    RESPONSE_FIELD_NUMBER: _ClassVar[int]
    ERROR_FIELD_NUMBER: _ClassVar[int]
    response: PredictResponse
    error: PredictError
    def __init__(self, response: _Optional[_Union[PredictResponse, _Mapping]] = ..., error: _Optional[_Union[PredictError, _Mapping]] = ...) -> None: ...

class PredictBatchResponse(_message.Message):
    __slots__ = ("results", "matrix_results")
    RESULTS_FIELD_NUMBER: _ClassVar[int]
    MATRIX_RESULTS_FIELD_NUMBER: _ClassVar[int]
    results: _containers.RepeatedCompositeFieldContainer[PredictResult]
    matrix_results: _containers.RepeatedCompositeFieldContainer[MatrixResult]
    def __init__(self, results: _Optional[_Iterable[_Union[PredictResult, _Mapping]]] = ..., matrix_results: _Optional[_Iterable[_Union[MatrixResult, _Mapping]]] = ...) -> None: ...

class ListTasksRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class TaskSummary(_message.Message):
    __slots__ = ("task", "latest_version", "schema_id", "classes", "description", "aliases", "owner")
    class AliasesEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: int
        def __init__(self, key: _Optional[str] = ..., value: _Optional[int] = ...) -> None: ...
    TASK_FIELD_NUMBER: _ClassVar[int]
    LATEST_VERSION_FIELD_NUMBER: _ClassVar[int]
    SCHEMA_ID_FIELD_NUMBER: _ClassVar[int]
    CLASSES_FIELD_NUMBER: _ClassVar[int]
    DESCRIPTION_FIELD_NUMBER: _ClassVar[int]
    ALIASES_FIELD_NUMBER: _ClassVar[int]
    OWNER_FIELD_NUMBER: _ClassVar[int]
    task: str
    latest_version: int
    schema_id: str
    classes: _containers.RepeatedScalarFieldContainer[str]
    description: str
    aliases: _containers.ScalarMap[str, int]
    owner: str
    def __init__(self, task: _Optional[str] = ..., latest_version: _Optional[int] = ..., schema_id: _Optional[str] = ..., classes: _Optional[_Iterable[str]] = ..., description: _Optional[str] = ..., aliases: _Optional[_Mapping[str, int]] = ..., owner: _Optional[str] = ...) -> None: ...

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
    __slots__ = ("task", "version", "schema_id", "classes", "model_family", "metrics", "created_at", "owner", "description", "versions", "training_data", "notice", "sha256", "aliases", "training_summary", "history", "lineage")
    class MetricsEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: float
        def __init__(self, key: _Optional[str] = ..., value: _Optional[float] = ...) -> None: ...
    class AliasesEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: int
        def __init__(self, key: _Optional[str] = ..., value: _Optional[int] = ...) -> None: ...
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
    ALIASES_FIELD_NUMBER: _ClassVar[int]
    TRAINING_SUMMARY_FIELD_NUMBER: _ClassVar[int]
    HISTORY_FIELD_NUMBER: _ClassVar[int]
    LINEAGE_FIELD_NUMBER: _ClassVar[int]
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
    aliases: _containers.ScalarMap[str, int]
    training_summary: TrainingSummary
    history: _containers.RepeatedCompositeFieldContainer[VersionEntry]
    lineage: Lineage
    def __init__(self, task: _Optional[str] = ..., version: _Optional[int] = ..., schema_id: _Optional[str] = ..., classes: _Optional[_Iterable[str]] = ..., model_family: _Optional[str] = ..., metrics: _Optional[_Mapping[str, float]] = ..., created_at: _Optional[str] = ..., owner: _Optional[str] = ..., description: _Optional[str] = ..., versions: _Optional[_Iterable[int]] = ..., training_data: _Optional[str] = ..., notice: _Optional[str] = ..., sha256: _Optional[str] = ..., aliases: _Optional[_Mapping[str, int]] = ..., training_summary: _Optional[_Union[TrainingSummary, _Mapping]] = ..., history: _Optional[_Iterable[_Union[VersionEntry, _Mapping]]] = ..., lineage: _Optional[_Union[Lineage, _Mapping]] = ...) -> None: ...

class Lineage(_message.Message):
    __slots__ = ("biomarker_models", "compatible_models", "training_set_sha256", "label_column", "label_definition", "n_examples")
    BIOMARKER_MODELS_FIELD_NUMBER: _ClassVar[int]
    COMPATIBLE_MODELS_FIELD_NUMBER: _ClassVar[int]
    TRAINING_SET_SHA256_FIELD_NUMBER: _ClassVar[int]
    LABEL_COLUMN_FIELD_NUMBER: _ClassVar[int]
    LABEL_DEFINITION_FIELD_NUMBER: _ClassVar[int]
    N_EXAMPLES_FIELD_NUMBER: _ClassVar[int]
    biomarker_models: _containers.RepeatedScalarFieldContainer[str]
    compatible_models: _containers.RepeatedCompositeFieldContainer[CompatibleModel]
    training_set_sha256: str
    label_column: str
    label_definition: str
    n_examples: int
    def __init__(self, biomarker_models: _Optional[_Iterable[str]] = ..., compatible_models: _Optional[_Iterable[_Union[CompatibleModel, _Mapping]]] = ..., training_set_sha256: _Optional[str] = ..., label_column: _Optional[str] = ..., label_definition: _Optional[str] = ..., n_examples: _Optional[int] = ...) -> None: ...

class CompatibleModel(_message.Message):
    __slots__ = ("version", "evidence")
    VERSION_FIELD_NUMBER: _ClassVar[int]
    EVIDENCE_FIELD_NUMBER: _ClassVar[int]
    version: str
    evidence: str
    def __init__(self, version: _Optional[str] = ..., evidence: _Optional[str] = ...) -> None: ...

class TrainingSummary(_message.Message):
    __slots__ = ("class_counts", "n_patients", "feature_mean", "feature_std", "ood_threshold")
    class ClassCountsEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: int
        def __init__(self, key: _Optional[str] = ..., value: _Optional[int] = ...) -> None: ...
    CLASS_COUNTS_FIELD_NUMBER: _ClassVar[int]
    N_PATIENTS_FIELD_NUMBER: _ClassVar[int]
    FEATURE_MEAN_FIELD_NUMBER: _ClassVar[int]
    FEATURE_STD_FIELD_NUMBER: _ClassVar[int]
    OOD_THRESHOLD_FIELD_NUMBER: _ClassVar[int]
    class_counts: _containers.ScalarMap[str, int]
    n_patients: int
    feature_mean: _containers.RepeatedScalarFieldContainer[float]
    feature_std: _containers.RepeatedScalarFieldContainer[float]
    ood_threshold: float
    def __init__(self, class_counts: _Optional[_Mapping[str, int]] = ..., n_patients: _Optional[int] = ..., feature_mean: _Optional[_Iterable[float]] = ..., feature_std: _Optional[_Iterable[float]] = ..., ood_threshold: _Optional[float] = ...) -> None: ...

class VersionEntry(_message.Message):
    __slots__ = ("version", "created_at", "owner", "sha256", "model_family", "metrics")
    class MetricsEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: float
        def __init__(self, key: _Optional[str] = ..., value: _Optional[float] = ...) -> None: ...
    VERSION_FIELD_NUMBER: _ClassVar[int]
    CREATED_AT_FIELD_NUMBER: _ClassVar[int]
    OWNER_FIELD_NUMBER: _ClassVar[int]
    SHA256_FIELD_NUMBER: _ClassVar[int]
    MODEL_FAMILY_FIELD_NUMBER: _ClassVar[int]
    METRICS_FIELD_NUMBER: _ClassVar[int]
    version: int
    created_at: str
    owner: str
    sha256: str
    model_family: str
    metrics: _containers.ScalarMap[str, float]
    def __init__(self, version: _Optional[int] = ..., created_at: _Optional[str] = ..., owner: _Optional[str] = ..., sha256: _Optional[str] = ..., model_family: _Optional[str] = ..., metrics: _Optional[_Mapping[str, float]] = ...) -> None: ...

class RegisterExpertRequest(_message.Message):
    __slots__ = ("task", "onnx_model", "schema_id", "classes", "n_features", "model_family", "metrics", "description", "training_data", "notice", "training_summary", "promote_to", "lineage", "allow_class_change")
    class MetricsEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: float
        def __init__(self, key: _Optional[str] = ..., value: _Optional[float] = ...) -> None: ...
    TASK_FIELD_NUMBER: _ClassVar[int]
    ONNX_MODEL_FIELD_NUMBER: _ClassVar[int]
    SCHEMA_ID_FIELD_NUMBER: _ClassVar[int]
    CLASSES_FIELD_NUMBER: _ClassVar[int]
    N_FEATURES_FIELD_NUMBER: _ClassVar[int]
    MODEL_FAMILY_FIELD_NUMBER: _ClassVar[int]
    METRICS_FIELD_NUMBER: _ClassVar[int]
    DESCRIPTION_FIELD_NUMBER: _ClassVar[int]
    TRAINING_DATA_FIELD_NUMBER: _ClassVar[int]
    NOTICE_FIELD_NUMBER: _ClassVar[int]
    TRAINING_SUMMARY_FIELD_NUMBER: _ClassVar[int]
    PROMOTE_TO_FIELD_NUMBER: _ClassVar[int]
    LINEAGE_FIELD_NUMBER: _ClassVar[int]
    ALLOW_CLASS_CHANGE_FIELD_NUMBER: _ClassVar[int]
    task: str
    onnx_model: bytes
    schema_id: str
    classes: _containers.RepeatedScalarFieldContainer[str]
    n_features: int
    model_family: str
    metrics: _containers.ScalarMap[str, float]
    description: str
    training_data: str
    notice: str
    training_summary: TrainingSummary
    promote_to: str
    lineage: Lineage
    allow_class_change: bool
    def __init__(self, task: _Optional[str] = ..., onnx_model: _Optional[bytes] = ..., schema_id: _Optional[str] = ..., classes: _Optional[_Iterable[str]] = ..., n_features: _Optional[int] = ..., model_family: _Optional[str] = ..., metrics: _Optional[_Mapping[str, float]] = ..., description: _Optional[str] = ..., training_data: _Optional[str] = ..., notice: _Optional[str] = ..., training_summary: _Optional[_Union[TrainingSummary, _Mapping]] = ..., promote_to: _Optional[str] = ..., lineage: _Optional[_Union[Lineage, _Mapping]] = ..., allow_class_change: _Optional[bool] = ...) -> None: ...

class PromoteRequest(_message.Message):
    __slots__ = ("task", "version", "alias")
    TASK_FIELD_NUMBER: _ClassVar[int]
    VERSION_FIELD_NUMBER: _ClassVar[int]
    ALIAS_FIELD_NUMBER: _ClassVar[int]
    task: str
    version: int
    alias: str
    def __init__(self, task: _Optional[str] = ..., version: _Optional[int] = ..., alias: _Optional[str] = ...) -> None: ...

class RollbackRequest(_message.Message):
    __slots__ = ("task", "alias")
    TASK_FIELD_NUMBER: _ClassVar[int]
    ALIAS_FIELD_NUMBER: _ClassVar[int]
    task: str
    alias: str
    def __init__(self, task: _Optional[str] = ..., alias: _Optional[str] = ...) -> None: ...

class AliasResponse(_message.Message):
    __slots__ = ("task", "alias", "version", "previous_version")
    TASK_FIELD_NUMBER: _ClassVar[int]
    ALIAS_FIELD_NUMBER: _ClassVar[int]
    VERSION_FIELD_NUMBER: _ClassVar[int]
    PREVIOUS_VERSION_FIELD_NUMBER: _ClassVar[int]
    task: str
    alias: str
    version: int
    previous_version: int
    def __init__(self, task: _Optional[str] = ..., alias: _Optional[str] = ..., version: _Optional[int] = ..., previous_version: _Optional[int] = ...) -> None: ...

class DeleteVersionRequest(_message.Message):
    __slots__ = ("task", "version")
    TASK_FIELD_NUMBER: _ClassVar[int]
    VERSION_FIELD_NUMBER: _ClassVar[int]
    task: str
    version: int
    def __init__(self, task: _Optional[str] = ..., version: _Optional[int] = ...) -> None: ...

class DeleteVersionResponse(_message.Message):
    __slots__ = ("task", "versions")
    TASK_FIELD_NUMBER: _ClassVar[int]
    VERSIONS_FIELD_NUMBER: _ClassVar[int]
    task: str
    versions: _containers.RepeatedScalarFieldContainer[int]
    def __init__(self, task: _Optional[str] = ..., versions: _Optional[_Iterable[int]] = ...) -> None: ...

class TrainingExample(_message.Message):
    __slots__ = ("vector", "video_hash", "label", "patient_id")
    VECTOR_FIELD_NUMBER: _ClassVar[int]
    VIDEO_HASH_FIELD_NUMBER: _ClassVar[int]
    LABEL_FIELD_NUMBER: _ClassVar[int]
    PATIENT_ID_FIELD_NUMBER: _ClassVar[int]
    vector: _schema_pb2.BiomarkerVector
    video_hash: str
    label: str
    patient_id: str
    def __init__(self, vector: _Optional[_Union[_schema_pb2.BiomarkerVector, _Mapping]] = ..., video_hash: _Optional[str] = ..., label: _Optional[str] = ..., patient_id: _Optional[str] = ...) -> None: ...

class TrainExpertRequest(_message.Message):
    __slots__ = ("task", "schema_id", "examples", "family", "seed", "description", "training_data", "notice", "promote_to", "biomarker_model_version", "label_column", "label_definition", "allow_class_change")
    TASK_FIELD_NUMBER: _ClassVar[int]
    SCHEMA_ID_FIELD_NUMBER: _ClassVar[int]
    EXAMPLES_FIELD_NUMBER: _ClassVar[int]
    FAMILY_FIELD_NUMBER: _ClassVar[int]
    SEED_FIELD_NUMBER: _ClassVar[int]
    DESCRIPTION_FIELD_NUMBER: _ClassVar[int]
    TRAINING_DATA_FIELD_NUMBER: _ClassVar[int]
    NOTICE_FIELD_NUMBER: _ClassVar[int]
    PROMOTE_TO_FIELD_NUMBER: _ClassVar[int]
    BIOMARKER_MODEL_VERSION_FIELD_NUMBER: _ClassVar[int]
    LABEL_COLUMN_FIELD_NUMBER: _ClassVar[int]
    LABEL_DEFINITION_FIELD_NUMBER: _ClassVar[int]
    ALLOW_CLASS_CHANGE_FIELD_NUMBER: _ClassVar[int]
    task: str
    schema_id: str
    examples: _containers.RepeatedCompositeFieldContainer[TrainingExample]
    family: str
    seed: int
    description: str
    training_data: str
    notice: str
    promote_to: str
    biomarker_model_version: str
    label_column: str
    label_definition: str
    allow_class_change: bool
    def __init__(self, task: _Optional[str] = ..., schema_id: _Optional[str] = ..., examples: _Optional[_Iterable[_Union[TrainingExample, _Mapping]]] = ..., family: _Optional[str] = ..., seed: _Optional[int] = ..., description: _Optional[str] = ..., training_data: _Optional[str] = ..., notice: _Optional[str] = ..., promote_to: _Optional[str] = ..., biomarker_model_version: _Optional[str] = ..., label_column: _Optional[str] = ..., label_definition: _Optional[str] = ..., allow_class_change: _Optional[bool] = ...) -> None: ...

class GetTrainingJobRequest(_message.Message):
    __slots__ = ("job_id",)
    JOB_ID_FIELD_NUMBER: _ClassVar[int]
    job_id: str
    def __init__(self, job_id: _Optional[str] = ...) -> None: ...

class TrainingJob(_message.Message):
    __slots__ = ("job_id", "task", "state", "progress", "stage", "error", "error_code", "card", "owner", "created_at", "started_at", "finished_at")
    JOB_ID_FIELD_NUMBER: _ClassVar[int]
    TASK_FIELD_NUMBER: _ClassVar[int]
    STATE_FIELD_NUMBER: _ClassVar[int]
    PROGRESS_FIELD_NUMBER: _ClassVar[int]
    STAGE_FIELD_NUMBER: _ClassVar[int]
    ERROR_FIELD_NUMBER: _ClassVar[int]
    ERROR_CODE_FIELD_NUMBER: _ClassVar[int]
    CARD_FIELD_NUMBER: _ClassVar[int]
    OWNER_FIELD_NUMBER: _ClassVar[int]
    CREATED_AT_FIELD_NUMBER: _ClassVar[int]
    STARTED_AT_FIELD_NUMBER: _ClassVar[int]
    FINISHED_AT_FIELD_NUMBER: _ClassVar[int]
    job_id: str
    task: str
    state: TrainingJobState
    progress: float
    stage: str
    error: str
    error_code: int
    card: TaskCard
    owner: str
    created_at: str
    started_at: str
    finished_at: str
    def __init__(self, job_id: _Optional[str] = ..., task: _Optional[str] = ..., state: _Optional[_Union[TrainingJobState, str]] = ..., progress: _Optional[float] = ..., stage: _Optional[str] = ..., error: _Optional[str] = ..., error_code: _Optional[int] = ..., card: _Optional[_Union[TaskCard, _Mapping]] = ..., owner: _Optional[str] = ..., created_at: _Optional[str] = ..., started_at: _Optional[str] = ..., finished_at: _Optional[str] = ...) -> None: ...
