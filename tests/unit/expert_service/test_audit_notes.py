"""What the expert servicers note for a call's audit record: task, expert version, the biomarker
model answered, whether the vector was out of distribution, and how many answers."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from expert_service.card import ExpertDraft, Lineage, TrainingSummary
from expert_service.predictor import ExpertPredictor
from expert_service.registry import LocalRegistry
from expert_service.servicer import ExpertServicer
from lus.audit.context import begin_call, end_call
from lus.biomarker.v1 import schema_pb2
from lus.errors import FailedPrecondition
from lus.expert.v1 import expert_service_pb2 as pb
from tests.fakes import logistic_fit

N = 6
MODEL = "biomarker-a"


@pytest.fixture
def servicer(tmp_path: Path) -> ExpertServicer:
    onnx, x, y = logistic_fit(0, N, scale=0.6)
    summary = TrainingSummary(
        {"covid": int((y == "covid").sum()), "healthy": int((y == "healthy").sum())},
        30,
        tuple(map(float, x.mean(axis=0))),
        tuple(map(float, x.std(axis=0))),
        1.5,
    )
    registry = LocalRegistry(tmp_path)
    draft = ExpertDraft(
        "covid",
        onnx,
        schema_id="s@1",
        classes=("covid", "healthy"),
        n_features=N,
        model_family="logreg",
        training_summary=summary,
        lineage=Lineage(biomarker_models=(MODEL,)),
    )
    registry.register(draft, owner="")
    return ExpertServicer(ExpertPredictor(registry))


def _vector(values: list[float], model: str = MODEL) -> schema_pb2.BiomarkerVector:
    return schema_pb2.BiomarkerVector(
        schema_id="s@1", values=values, model=schema_pb2.ModelRef(version=model)
    )


def test_predict_notes_what_answered(servicer: ExpertServicer) -> None:
    token = begin_call()
    servicer.Predict(pb.PredictRequest(task="covid", vector=_vector([1.0] * N)), None)
    assert end_call(token) == {
        "task": "covid",
        "expert_version": 1,
        "biomarker_model": MODEL,
        "out_of_distribution": True,  # ones are far from vectors drawn within [0, 0.6)
        "items": 1,
    }


def test_a_refused_predict_still_notes_what_was_asked(servicer: ExpertServicer) -> None:
    token = begin_call()
    with pytest.raises(FailedPrecondition):
        servicer.Predict(
            pb.PredictRequest(task="covid", vector=_vector([0.3] * N, "retrained")), None
        )
    assert end_call(token) == {"task": "covid", "biomarker_model": "retrained"}


def test_a_batch_notes_its_tasks_models_and_answers(servicer: ExpertServicer) -> None:
    flat = np.full(3 * N, 0.3, dtype=np.float32).tolist()
    request = pb.PredictBatchRequest(
        requests=[
            pb.PredictRequest(task="covid", vector=_vector([0.3] * N)),
            pb.PredictRequest(task="covid", vector=_vector([0.3] * N, "retrained")),
        ],
        matrices=[
            pb.VectorMatrix(
                task="covid",
                schema_id="s@1",
                n_vectors=3,
                values=flat,
                model=schema_pb2.ModelRef(version=MODEL),
            )
        ],
    )
    token = begin_call()
    servicer.PredictBatch(request, None)
    assert end_call(token) == {
        "task": "covid",
        "expert_version": "covid v1",
        "biomarker_model": MODEL,
        "out_of_distribution": False,
        "items": 4,  # the refused request is not an answer
    }
