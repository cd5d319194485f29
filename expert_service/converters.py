"""The one place that converts between protobuf messages and the expert tier's domain types."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

import numpy as np

from expert_service.answers import (
    DEFAULT_CONTRIBUTIONS,
    MatrixPrediction,
    MatrixQuery,
    Prediction,
    PredictQuery,
    TaskInfo,
)
from expert_service.card import (
    CompatibleModel,
    ExpertCard,
    ExpertDraft,
    Lineage,
    TrainingSummary,
)
from expert_service.explain import Contribution
from expert_service.limits import MAX_IDENTIFIER_CHARS, check_identifier
from lus.errors import LusError
from lus.expert.v1 import expert_service_pb2 as pb

SERVICE_NAME: str = pb.DESCRIPTOR.services_by_name["ExpertService"].full_name
"""``lus.expert.v1.ExpertService``: the name used by health checks and reflection."""

ADMIN_SERVICE_NAME: str = pb.DESCRIPTOR.services_by_name["ExpertAdminService"].full_name
"""``lus.expert.v1.ExpertAdminService``."""

_DISTRIBUTION = {
    None: pb.DISTRIBUTION_UNASSESSED,
    False: pb.DISTRIBUTION_IN,
    True: pb.DISTRIBUTION_OUT,
}


def predict_query(request: pb.PredictRequest) -> PredictQuery:
    """Unpack a ``PredictRequest``; an unset vector reads as empty and fails validation."""
    top_k = (
        request.max_contributions
        if request.HasField("max_contributions")
        else DEFAULT_CONTRIBUTIONS
    )
    vector = request.vector
    query = PredictQuery(
        task=request.task,
        version=request.version,
        schema_id=vector.schema_id,
        values=vector.values,
        alias=request.alias,
        max_contributions=top_k,
        video_hash=request.video_hash,
        biomarker_model_version=request.biomarker_model_version,
        biomarker_model=vector.model.version,
    )
    _check_identifiers(
        ("schema_id", query.schema_id),
        ("alias", query.alias),
        ("video_hash", query.video_hash),
        ("biomarker_model_version", query.biomarker_model_version),
        ("vector.model.version", query.biomarker_model),
    )
    return query


def _check_identifiers(*named: tuple[str, str]) -> None:
    """Refuse an over-long or unprintable identifier before any message repeats it (the task
    name is checked where it is first looked up: ``limits.check_task``). One length test on
    the fast path; the per-field checks only when it fails."""
    if max(len(value) for _, value in named) <= MAX_IDENTIFIER_CHARS and all(
        value.isprintable() for _, value in named
    ):
        return
    for what, value in named:
        check_identifier(what, value)


def prediction_to_pb(prediction: Prediction) -> pb.PredictResponse:
    # ``add(**fields)`` builds each item in place: about half the cost of building the
    # messages first and copying them in, which matters at tens of microseconds per call.
    explanation = prediction.explanation
    response = pb.PredictResponse(
        task=prediction.task,
        version=prediction.version,
        label=prediction.label,
        notice=prediction.notice,
        alias=prediction.alias,
        explanation_note=prediction.explanation_note,
        biomarker_model_version=prediction.biomarker_model_version,
    )
    add_probability = response.probabilities.add
    for label, probability in prediction.probabilities:
        add_probability(label=label, probability=probability)
    if explanation is not None:
        response.distribution = _DISTRIBUTION[explanation.out_of_distribution]
        response.ood_score = explanation.ood_score
        response.ood_threshold = explanation.threshold
        _add_contributions(response.contributions, explanation.contributions)
    return response


def _add_contributions(field: Any, contributions: Iterable[Contribution]) -> None:
    add = field.add
    for c in contributions:
        add(biomarker=c.biomarker, contribution=c.contribution, value=c.value, baseline=c.baseline)


def batch_queries(request: pb.PredictBatchRequest) -> list[PredictQuery]:
    return [predict_query(r) for r in request.requests]


def matrix_queries(request: pb.PredictBatchRequest) -> list[MatrixQuery]:
    """The column-oriented part of a batch; values stay flat (the runner knows the width)."""
    queries = []
    for m in request.matrices:
        _check_identifiers(
            ("schema_id", m.schema_id), ("alias", m.alias), ("model.version", m.model.version)
        )
        queries.append(
            MatrixQuery(
                task=m.task,
                version=m.version,
                alias=m.alias,
                schema_id=m.schema_id,
                n_vectors=m.n_vectors,
                values=np.asarray(m.values, dtype=np.float32),
                max_contributions=m.max_contributions,
                biomarker_model=m.model.version,
            )
        )
    return queries


def _error(error: LusError) -> pb.PredictError:
    return pb.PredictError(code=error.code.value[0], message=str(error))


def batch_to_pb(
    results: Sequence[Prediction | LusError],
    matrices: Sequence[MatrixPrediction | LusError] = (),
) -> pb.PredictBatchResponse:
    items = []
    for result in results:
        if isinstance(result, LusError):
            items.append(pb.PredictResult(error=_error(result)))
        else:
            items.append(pb.PredictResult(response=prediction_to_pb(result)))
    return pb.PredictBatchResponse(
        results=items, matrix_results=[matrix_to_pb(m) for m in matrices]
    )


def matrix_to_pb(result: MatrixPrediction | LusError) -> pb.MatrixResult:
    """Flat arrays straight into packed repeated fields: no message per vector."""
    if isinstance(result, LusError):
        return pb.MatrixResult(error=_error(result))
    message = pb.MatrixResult()
    response = message.response
    response.task = result.task
    response.version = result.version
    response.alias = result.alias
    response.classes.extend(result.classes)
    response.probabilities.extend(result.probabilities.ravel().tolist())
    response.labels.extend(result.labels.tolist())
    response.notice = result.notice
    response.ood_threshold = result.threshold
    response.explanation_note = result.explanation_note
    response.biomarker_model_version = result.biomarker_model_version
    if result.ood_scores is not None:
        response.ood_scores.extend(result.ood_scores.tolist())
        response.out_of_distribution.extend((result.ood_scores > result.threshold).tolist())
    if result.contributions:
        response.contributions_per_vector = len(result.contributions[0])
        _add_contributions(response.contributions, (c for row in result.contributions for c in row))
    return message


def task_list_to_pb(infos: Sequence[TaskInfo]) -> pb.ListTasksResponse:
    """``infos`` holds each task's default card."""
    return pb.ListTasksResponse(
        tasks=[
            pb.TaskSummary(
                task=info.card.task,
                latest_version=info.versions[-1] if info.versions else info.card.version,
                schema_id=info.card.schema_id,
                classes=list(info.card.classes),
                description=info.card.description,
                aliases=info.aliases,
                owner=info.owner,
            )
            for info in infos
        ]
    )


def summary_to_pb(summary: TrainingSummary) -> pb.TrainingSummary:
    return pb.TrainingSummary(
        class_counts=dict(summary.class_counts),
        n_patients=summary.n_patients,
        feature_mean=summary.feature_mean,
        feature_std=summary.feature_std,
        ood_threshold=summary.ood_threshold,
    )


def summary_from_pb(message: pb.TrainingSummary) -> TrainingSummary:
    return TrainingSummary(
        class_counts=dict(message.class_counts),
        n_patients=message.n_patients,
        feature_mean=tuple(message.feature_mean),
        feature_std=tuple(message.feature_std),
        ood_threshold=message.ood_threshold,
    )


def _entry(card: ExpertCard) -> pb.VersionEntry:
    return pb.VersionEntry(
        version=card.version,
        created_at=card.created_at,
        owner=card.owner,
        sha256=card.sha256,
        model_family=card.model_family,
        metrics=dict(card.metrics),
    )


def task_info_to_pb(info: TaskInfo) -> pb.TaskCard:
    card = info.card
    message = pb.TaskCard(
        task=card.task,
        version=card.version,
        schema_id=card.schema_id,
        classes=list(card.classes),
        model_family=card.model_family,
        metrics=dict(card.metrics),
        created_at=card.created_at,
        owner=card.owner,
        description=card.description,
        versions=list(info.versions),
        training_data=card.training_data,
        notice=card.notice,
        sha256=card.sha256,
        aliases=info.aliases,
        history=[_entry(c) for c in info.history],
    )
    if card.training_summary is not None:
        message.training_summary.CopyFrom(summary_to_pb(card.training_summary))
    if card.lineage is not None:
        message.lineage.CopyFrom(lineage_to_pb(card.lineage))
    return message


def lineage_to_pb(lineage: Lineage) -> pb.Lineage:
    return pb.Lineage(
        biomarker_models=list(lineage.biomarker_models),
        compatible_models=[
            pb.CompatibleModel(version=c.version, evidence=c.evidence)
            for c in lineage.compatible_models
        ],
        training_set_sha256=lineage.training_set_sha256,
        label_column=lineage.label_column,
        label_definition=lineage.label_definition,
        n_examples=lineage.n_examples,
    )


def lineage_from_pb(message: pb.Lineage) -> Lineage:
    return Lineage(
        biomarker_models=tuple(message.biomarker_models),
        compatible_models=tuple(
            CompatibleModel(c.version, c.evidence) for c in message.compatible_models
        ),
        training_set_sha256=message.training_set_sha256,
        label_column=message.label_column,
        label_definition=message.label_definition,
        n_examples=message.n_examples,
    )


def expert_draft(request: pb.RegisterExpertRequest) -> ExpertDraft:
    """The expert a ``RegisterExpertRequest`` carries; the registry checks it (an unset lineage
    is refused there, saying what to add)."""
    summary = request.training_summary if request.HasField("training_summary") else None
    lineage = lineage_from_pb(request.lineage) if request.HasField("lineage") else None
    return ExpertDraft(
        task=request.task,
        onnx_bytes=bytes(request.onnx_model),
        schema_id=request.schema_id,
        classes=tuple(request.classes),
        n_features=request.n_features,
        model_family=request.model_family,
        metrics=dict(request.metrics),
        description=request.description,
        training_data=request.training_data,
        notice=request.notice,
        training_summary=summary_from_pb(summary) if summary is not None else None,
        lineage=lineage,
        allow_class_change=request.allow_class_change,
    )


def alias_to_pb(task: str, alias: str, version: int, previous: int) -> pb.AliasResponse:
    return pb.AliasResponse(task=task, alias=alias, version=version, previous_version=previous)


def deleted_to_pb(task: str, versions: Sequence[int]) -> pb.DeleteVersionResponse:
    return pb.DeleteVersionResponse(task=task, versions=list(versions))
