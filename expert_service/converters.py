"""The one place that converts between protobuf messages and the expert tier's domain types."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from expert_service.artifact import ExpertCard, TrainingSummary
from expert_service.runner import DEFAULT_CONTRIBUTIONS, Prediction, PredictQuery, TaskInfo
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
    return PredictQuery(
        task=request.task,
        version=request.version,
        schema_id=request.vector.schema_id,
        values=request.vector.values,
        alias=request.alias,
        max_contributions=top_k,
        video_hash=request.video_hash,
        biomarker_model_version=request.biomarker_model_version,
    )


def prediction_to_pb(prediction: Prediction) -> pb.PredictResponse:
    explanation = prediction.explanation
    response = pb.PredictResponse(
        task=prediction.task,
        version=prediction.version,
        label=prediction.label,
        probabilities=[
            pb.ClassProbability(label=label, probability=p) for label, p in prediction.probabilities
        ],
        notice=prediction.notice,
        alias=prediction.alias,
        explanation_note=prediction.explanation_note,
    )
    if explanation is not None:
        response.distribution = _DISTRIBUTION[explanation.out_of_distribution]
        response.ood_score = explanation.ood_score
        response.ood_threshold = explanation.threshold
        response.contributions.extend(
            pb.Contribution(
                biomarker=c.biomarker,
                contribution=c.contribution,
                value=c.value,
                baseline=c.baseline,
            )
            for c in explanation.contributions
        )
    return response


def batch_queries(request: pb.PredictBatchRequest) -> list[PredictQuery]:
    return [predict_query(r) for r in request.requests]


def batch_to_pb(results: Sequence[Prediction | LusError]) -> pb.PredictBatchResponse:
    items = []
    for result in results:
        if isinstance(result, LusError):
            error = pb.PredictError(code=result.code.value[0], message=str(result))
            items.append(pb.PredictResult(error=error))
        else:
            items.append(pb.PredictResult(response=prediction_to_pb(result)))
    return pb.PredictBatchResponse(results=items)


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
    return message


def register_arguments(request: pb.RegisterExpertRequest) -> dict[str, Any]:
    """Keyword arguments of ``ExpertRegistry.register`` (all but ``owner``) from a request."""
    summary = request.training_summary if request.HasField("training_summary") else None
    return {
        "task": request.task,
        "onnx_bytes": bytes(request.onnx_model),
        "schema_id": request.schema_id,
        "classes": tuple(request.classes),
        "n_features": request.n_features,
        "model_family": request.model_family,
        "metrics": dict(request.metrics),
        "description": request.description,
        "training_data": request.training_data,
        "notice": request.notice,
        "training_summary": summary_from_pb(summary) if summary is not None else None,
    }


def alias_to_pb(task: str, alias: str, version: int, previous: int) -> pb.AliasResponse:
    return pb.AliasResponse(task=task, alias=alias, version=version, previous_version=previous)


def deleted_to_pb(task: str, versions: Sequence[int]) -> pb.DeleteVersionResponse:
    return pb.DeleteVersionResponse(task=task, versions=list(versions))
