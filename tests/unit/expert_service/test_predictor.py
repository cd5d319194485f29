"""ExpertPredictor: answers, input validation with actionable messages, caching and warm-up."""

from __future__ import annotations

import math
import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from expert_service.card import GROUND_TRUTH, ExpertDraft, Lineage
from expert_service.errors import CorruptArtifact
from expert_service.predictor import (
    ExpertPredictor,
    MatrixPrediction,
    MatrixQuery,
    Prediction,
    PredictQuery,
)
from expert_service.registry import LocalRegistry
from lus.errors import FailedPrecondition, InvalidInput, NotFound, SchemaMismatch
from lus.schema import BiomarkerSchema, load_schema
from trainer.experts import FittedExpert, fit_expert

REPO = Path(__file__).resolve().parents[3]
SCHEMA = load_schema()
N = len(SCHEMA)
MODEL = "biomarker-a"


def _fitted(seed: int) -> FittedExpert:
    rng = np.random.default_rng(seed)
    x = rng.random((80, N)).astype(np.float32)
    y = np.where(x[:, 0] > x[:, 5], "covid", "healthy")
    return fit_expert(x, y.tolist(), family="logreg", seed=seed)


def _register(
    registry: LocalRegistry,
    task: str,
    fitted: FittedExpert,
    schema: BiomarkerSchema = SCHEMA,
    models: tuple[str, ...] = (MODEL,),
) -> int:
    draft = ExpertDraft(
        task,
        fitted.onnx_bytes,
        schema_id=schema.schema_id,
        classes=fitted.classes,
        n_features=fitted.n_features,
        model_family=fitted.model_family,
        notice="SYNTHETIC DATA",
        lineage=Lineage(biomarker_models=models),
    )
    return registry.register(draft, owner="").version


@pytest.fixture(scope="module")
def fitted() -> list[FittedExpert]:
    return [_fitted(0), _fitted(1)]


@pytest.fixture(scope="module")
def runner(tmp_path_factory: pytest.TempPathFactory, fitted: list[FittedExpert]) -> ExpertPredictor:
    registry = LocalRegistry(tmp_path_factory.mktemp("reg"))
    _register(registry, "covid", fitted[0])
    _register(registry, "pneumonia", fitted[1])
    return ExpertPredictor(registry)


def test_predict_matches_the_fitted_model(
    runner: ExpertPredictor, fitted: list[FittedExpert]
) -> None:
    values = np.linspace(0, 1, N).tolist()
    prediction = runner.predict("covid", 0, SCHEMA.schema_id, values, biomarker_model=MODEL)
    expected = fitted[0].estimator.predict_proba(np.asarray([values], dtype=np.float32))[0]
    assert (prediction.task, prediction.version, prediction.notice) == (
        "covid",
        1,
        "SYNTHETIC DATA",
    )
    assert [label for label, _ in prediction.probabilities] == ["covid", "healthy"]
    np.testing.assert_allclose([p for _, p in prediction.probabilities], expected, atol=1e-5)
    assert prediction.label == fitted[0].classes[int(np.argmax(expected))]
    assert prediction.as_dict().keys() == {"covid", "healthy"}


@settings(max_examples=40, deadline=None)
@given(values=arrays(np.float32, N, elements=st.floats(0.0, 1.0, width=32)))
def test_any_valid_vector_gets_a_distribution(runner: ExpertPredictor, values: np.ndarray) -> None:
    prediction = runner.predict(
        "pneumonia", 1, SCHEMA.schema_id, values.tolist(), biomarker_model=MODEL
    )
    probabilities = [p for _, p in prediction.probabilities]
    assert math.isclose(sum(probabilities), 1.0, abs_tol=1e-5)
    assert prediction.label == prediction.probabilities[int(np.argmax(probabilities))][0]


def test_unknown_task_and_version_list_what_exists(runner: ExpertPredictor) -> None:
    vector = [0.5] * N
    with pytest.raises(NotFound, match="no expert for task 'ards'; known tasks: covid, pneumonia"):
        runner.predict("ards", 0, SCHEMA.schema_id, vector, biomarker_model=MODEL)
    with pytest.raises(NotFound, match="'covid' has no version 9; its versions: 1"):
        runner.predict("covid", 9, SCHEMA.schema_id, vector, biomarker_model=MODEL)
    with pytest.raises(InvalidInput, match="task name"):
        runner.predict("../covid", 0, SCHEMA.schema_id, vector, biomarker_model=MODEL)


def test_schema_mismatch_names_both_schemas(runner: ExpertPredictor) -> None:
    other = load_schema("pocus-weak6")
    with pytest.raises(SchemaMismatch) as caught:
        runner.predict("covid", 0, other.schema_id, [0.5] * len(other), biomarker_model=MODEL)
    assert str(caught.value) == (
        f"vector made with schema {other.schema_id}; expert covid v1 expects {SCHEMA.schema_id}"
    )
    with pytest.raises(InvalidInput, match="vector has no schema_id"):
        runner.predict("covid", 0, "", [0.5] * N, biomarker_model=MODEL)


def test_wrong_length_says_how_many(runner: ExpertPredictor) -> None:
    with pytest.raises(InvalidInput) as caught:
        runner.predict("covid", 0, SCHEMA.schema_id, [0.5] * 12, biomarker_model=MODEL)
    assert str(caught.value) == f"vector has 12 values; schema {SCHEMA.schema_id} has {N}"


def test_non_finite_values_are_named_by_position_and_key(runner: ExpertPredictor) -> None:
    values = [0.5] * N
    values[3], values[7] = math.nan, math.inf
    with pytest.raises(InvalidInput, match="NaN or Inf") as caught:
        runner.predict("covid", 0, SCHEMA.schema_id, values, biomarker_model=MODEL)
    assert f"3 ({SCHEMA.keys[3]}), 7 ({SCHEMA.keys[7]})" in str(caught.value)
    with pytest.raises(InvalidInput, match=r"and 3 more are NaN"):
        runner.predict(
            "covid", 0, SCHEMA.schema_id, [math.nan] * 8 + [0.5] * (N - 8), biomarker_model=MODEL
        )


def test_values_outside_unit_interval_are_refused(runner: ExpertPredictor) -> None:
    values = [0.5] * N
    values[0] = 1.5
    with pytest.raises(InvalidInput, match=r"positions 0 \(.+\) are outside \[0, 1\]"):
        runner.predict("covid", 0, SCHEMA.schema_id, values, biomarker_model=MODEL)


def test_new_versions_are_served_after_refresh_and_old_until_then(
    tmp_path: Path, fitted: list[FittedExpert]
) -> None:
    registry = LocalRegistry(tmp_path)
    _register(registry, "covid", fitted[0])
    runner = ExpertPredictor(registry)
    assert runner.warm_up() == [("covid", 1)]
    assert (
        runner.predict("covid", 0, SCHEMA.schema_id, [0.5] * N, biomarker_model=MODEL).version == 1
    )
    _register(registry, "covid", fitted[1])  # registered while serving
    assert (
        runner.predict("covid", 0, SCHEMA.schema_id, [0.5] * N, biomarker_model=MODEL).version == 1
    )  # old route
    assert (
        runner.predict("covid", 2, SCHEMA.schema_id, [0.5] * N, biomarker_model=MODEL).version == 2
    )  # explicit
    assert runner.refresh() is True
    assert runner.refresh() is False  # revision unchanged: nothing re-read
    assert (
        runner.predict("covid", 0, SCHEMA.schema_id, [0.5] * N, biomarker_model=MODEL).version == 2
    )
    assert (
        runner.predict("covid", 1, SCHEMA.schema_id, [0.5] * N, biomarker_model=MODEL).version == 1
    )
    info = runner.task_card("covid", 1)
    assert (info.card.version, info.versions) == (1, (1, 2))
    assert [c.version for c in info.history] == [1, 2]
    assert [i.card.version for i in runner.list_tasks()] == [2]


def test_sessions_are_cached_and_evicted_lru(tmp_path: Path, fitted: list[FittedExpert]) -> None:
    registry = LocalRegistry(tmp_path)
    _register(registry, "covid", fitted[0])
    _register(registry, "pneumonia", fitted[1])
    runner = ExpertPredictor(registry, max_loaded=1)
    first = runner._served("covid", 1, "")[0]
    assert runner._served("covid", 0, "")[0] is first  # no reload for the same (task, version)
    runner._served("pneumonia", 1, "")
    assert runner.loaded() == [("pneumonia", 1)]
    assert runner._served("covid", 1, "")[0] is not first


def test_warm_up_loads_newest_and_skips_corrupt(tmp_path: Path, fitted: list[FittedExpert]) -> None:
    registry = LocalRegistry(tmp_path)
    _register(registry, "covid", fitted[0])
    _register(registry, "pneumonia", fitted[1])
    model = tmp_path / "pneumonia" / "1" / "model.onnx"
    model.chmod(0o644)
    model.write_bytes(fitted[0].onnx_bytes)
    runner = ExpertPredictor(registry)
    assert runner.warm_up() == [("covid", 1)]
    with pytest.raises(CorruptArtifact):
        runner.predict("pneumonia", 0, SCHEMA.schema_id, [0.5] * N, biomarker_model=MODEL)


def test_serving_imports_no_training_or_video_stack() -> None:
    # Nor the packages above the expert tier: the trainer, the GPU tier, the command line.
    heavy = ("sklearn", "skl2onnx", "onnx", "torch", "av", "scipy")
    above = ("trainer", "biomarker_service", "lus_cli")
    code = (
        "import sys, expert_service.server; "
        f"print(sorted(m for m in sys.modules if m.split('.')[0] in {heavy + above!r}))"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, check=True
    )
    assert result.stdout.strip() == "[]"


def test_vectors_of_other_biomarker_models_are_refused_everywhere(
    runner: ExpertPredictor,
) -> None:
    vector = [0.5] * N
    with pytest.raises(FailedPrecondition) as caught:
        runner.predict("covid", 0, SCHEMA.schema_id, vector, biomarker_model="biomarker-b")
    assert str(caught.value).startswith(
        "vector made by biomarker model biomarker-b; expert covid v1 was fit on biomarker model "
        "biomarker-a:"
    )
    with pytest.raises(FailedPrecondition, match=r"^vector names no biomarker model; expert covid"):
        runner.predict("covid", 0, SCHEMA.schema_id, vector, biomarker_model="")
    queries = [
        PredictQuery("covid", schema_id=SCHEMA.schema_id, values=vector, biomarker_model=model)
        for model in (MODEL, "biomarker-b", MODEL)
    ]
    first, refused, third = runner.predict_batch(queries)
    assert isinstance(refused, FailedPrecondition)
    assert isinstance(first, Prediction) and isinstance(third, Prediction)
    assert first.biomarker_model_version == third.biomarker_model_version == MODEL
    matrix = MatrixQuery("covid", 0, "", SCHEMA.schema_id, 2, np.full(2 * N, 0.5, np.float32))
    answered, other = runner.predict_matrices(
        [
            replace(matrix, biomarker_model=MODEL),
            replace(matrix, biomarker_model="biomarker-b"),
        ]
    )
    assert isinstance(answered, MatrixPrediction) and answered.biomarker_model_version == MODEL
    assert isinstance(other, FailedPrecondition)


def test_an_expert_fit_on_annotated_findings_takes_unnamed_vectors(
    tmp_path: Path, fitted: list[FittedExpert]
) -> None:
    registry = LocalRegistry(tmp_path)
    _register(registry, "covid", fitted[0], models=(GROUND_TRUTH,))
    runner = ExpertPredictor(registry)
    answer = runner.predict("covid", 0, SCHEMA.schema_id, [0.5] * N, biomarker_model="")
    assert answer.biomarker_model_version == GROUND_TRUTH  # the reply says how it was read
    named = runner.predict("covid", 0, SCHEMA.schema_id, [0.5] * N, biomarker_model=GROUND_TRUTH)
    assert named.biomarker_model_version == GROUND_TRUTH
    with pytest.raises(FailedPrecondition, match="fit on biomarker model ground-truth"):
        runner.predict("covid", 0, SCHEMA.schema_id, [0.5] * N, biomarker_model=MODEL)
