"""Protobuf <-> domain conversion for TrainExpert and GetTrainingJob (the rest: ``converters``)."""

from __future__ import annotations

from expert_service import converters
from expert_service.answers import TaskInfo
from expert_service.training.examples import Example, TrainingRequest
from expert_service.training.jobs import JobState, JobStatus
from lus.expert.v1 import expert_service_pb2 as pb

_STATE = {
    JobState.QUEUED: pb.TRAINING_JOB_STATE_QUEUED,
    JobState.RUNNING: pb.TRAINING_JOB_STATE_RUNNING,
    JobState.SUCCEEDED: pb.TRAINING_JOB_STATE_SUCCEEDED,
    JobState.FAILED: pb.TRAINING_JOB_STATE_FAILED,
}


def _example(message: pb.TrainingExample) -> Example:
    if message.WhichOneof("input") == "vector":
        return Example(
            label=message.label,
            patient_id=message.patient_id,
            values=tuple(message.vector.values),
            schema_id=message.vector.schema_id,
            biomarker_model=message.vector.model.version,
        )
    return Example(
        label=message.label, patient_id=message.patient_id, video_hash=message.video_hash
    )


def training_request(request: pb.TrainExpertRequest) -> TrainingRequest:
    """Unpack a ``TrainExpertRequest``; an empty family means the zoo."""
    return TrainingRequest(
        task=request.task,
        schema_id=request.schema_id,
        examples=tuple(_example(e) for e in request.examples),
        family=request.family or "zoo",
        seed=request.seed,
        description=request.description,
        training_data=request.training_data,
        notice=request.notice,
        promote_to=request.promote_to,
        biomarker_model_version=request.biomarker_model_version,
        label_column=request.label_column,
        label_definition=request.label_definition,
        allow_class_change=request.allow_class_change,
    )


def job_to_pb(status: JobStatus[TaskInfo]) -> pb.TrainingJob:
    message = pb.TrainingJob(
        job_id=status.job_id,
        task=status.task,
        state=_STATE[status.state],
        progress=status.progress,
        stage=status.stage,
        error=status.error,
        error_code=status.error_code.value[0] if status.error_code is not None else 0,
        owner=status.owner,
        created_at=status.created_at,
        started_at=status.started_at,
        finished_at=status.finished_at,
    )
    if status.result is not None:
        message.card.CopyFrom(converters.task_info_to_pb(status.result))
    return message
