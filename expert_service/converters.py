"""The one place that converts between protobuf messages and the expert tier's domain types."""

from __future__ import annotations

from dataclasses import dataclass

from expert_service.artifact import ExpertCard
from expert_service.runner import Prediction, TaskInfo
from lus.expert.v1 import expert_service_pb2 as pb

SERVICE_NAME: str = pb.DESCRIPTOR.services_by_name["ExpertService"].full_name
"""``lus.expert.v1.ExpertService``: the name used by health checks and reflection."""


@dataclass(frozen=True)
class PredictQuery:
    """A ``PredictRequest`` in domain terms."""

    task: str
    version: int
    schema_id: str
    values: tuple[float, ...]


def predict_query(request: pb.PredictRequest) -> PredictQuery:
    """Unpack a ``PredictRequest``; an unset vector reads as empty and fails validation."""
    return PredictQuery(
        task=request.task,
        version=request.version,
        schema_id=request.vector.schema_id,
        values=tuple(request.vector.values),
    )


def prediction_to_pb(prediction: Prediction) -> pb.PredictResponse:
    return pb.PredictResponse(
        task=prediction.task,
        version=prediction.version,
        label=prediction.label,
        probabilities=[
            pb.ClassProbability(label=label, probability=p) for label, p in prediction.probabilities
        ],
        notice=prediction.notice,
    )


def task_list_to_pb(cards: list[ExpertCard]) -> pb.ListTasksResponse:
    """``cards`` holds the newest card of each task."""
    return pb.ListTasksResponse(
        tasks=[
            pb.TaskSummary(
                task=card.task,
                latest_version=card.version,
                schema_id=card.schema_id,
                classes=list(card.classes),
                description=card.description,
            )
            for card in cards
        ]
    )


def task_info_to_pb(info: TaskInfo) -> pb.TaskCard:
    card = info.card
    return pb.TaskCard(
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
    )
