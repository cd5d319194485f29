"""TrainExpert's up-front checks: every refusal names what to change; hashes come from the store."""

from __future__ import annotations

import math
from dataclasses import replace
from pathlib import Path

import grpc
import numpy as np
import pytest

from expert_service.errors import TrainingUnavailable
from expert_service.lineage import training_set_sha256
from expert_service.training import worker as training_worker
from expert_service.training.examples import Example, TrainingRequest, build_training_set
from expert_service.training.service import stored_training_set
from expert_service.training.worker import check_training_installed
from lus.errors import FailedPrecondition, InvalidInput, LusError, NotFound, SchemaMismatch
from lus.feature_store.base import StoredVector
from lus.feature_store.sqlite import SqliteFeatureStore
from lus.schema import load_schema

SCHEMA = load_schema()
N = len(SCHEMA)


def _examples(n_patients: int = 6, per_patient: int = 2) -> tuple[Example, ...]:
    rng = np.random.default_rng(0)
    return tuple(
        Example(
            label="covid" if p % 2 else "healthy",
            patient_id=f"p{p}",
            values=tuple(float(v) for v in rng.random(N)),
            biomarker_model="bio-v6",
        )
        for p in range(n_patients)
        for _ in range(per_patient)
    )


def _request(**changes: object) -> TrainingRequest:
    request = TrainingRequest(task="covid", schema_id=SCHEMA.schema_id, examples=_examples())
    return replace(request, **changes)  # type: ignore[arg-type]


def _refusal(request: TrainingRequest, store: object = None) -> LusError:
    with pytest.raises(LusError) as caught:
        build_training_set(request, store)  # type: ignore[arg-type]
    return caught.value


def test_a_good_request_becomes_rows_in_order() -> None:
    request = _request()
    data = build_training_set(request, None)
    assert data.vectors.shape == (12, N) and data.vectors.dtype == np.float32
    assert data.labels == tuple(e.label for e in request.examples)
    assert data.patients == tuple(e.patient_id for e in request.examples)
    assert (data.n_by_hash, data.biomarker_models) == (0, ("bio-v6",))


def test_vectors_that_name_no_biomarker_model_are_refused() -> None:
    examples = list(_examples())
    examples[4] = replace(examples[4], biomarker_model="")
    examples[9] = replace(examples[9], biomarker_model=" ")
    error = _refusal(_request(examples=tuple(examples)))
    assert error.code is grpc.StatusCode.INVALID_ARGUMENT
    assert "examples 4, 9 send vectors that name no biomarker model: set vector.model" in (
        str(error)
    )


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"task": "Bad Name"}, "task name 'Bad Name' is not valid"),
        ({"family": "gbm"}, "unknown expert family 'gbm'; choose one of zoo, decision_tree"),
        ({"promote_to": "canary"}, "canary"),
        ({"schema_id": ""}, "schema_id is empty"),
        ({"examples": ()}, "no examples"),
    ],
)
def test_bad_fields_are_refused_with_invalid_argument(
    changes: dict[str, object], message: str
) -> None:
    error = _refusal(_request(**changes))
    assert error.code is grpc.StatusCode.INVALID_ARGUMENT
    assert message in str(error)


def test_examples_without_label_patient_or_input_are_named() -> None:
    examples = list(_examples())
    examples[3] = replace(examples[3], label=" ")
    assert "examples 3 have no label" in str(_refusal(_request(examples=tuple(examples))))
    examples = list(_examples())
    examples[1] = replace(examples[1], patient_id="")
    assert "examples 1 have no patient_id" in str(_refusal(_request(examples=tuple(examples))))
    examples = list(_examples())
    examples[7] = replace(examples[7], values=None)
    error = _refusal(_request(examples=tuple(examples)))
    assert "examples 7 have neither a vector nor a video_hash" in str(error)


def test_a_set_too_small_says_what_is_missing() -> None:
    error = _refusal(_request(examples=_examples(n_patients=4, per_patient=2)))
    assert error.code is grpc.StatusCode.INVALID_ARGUMENT
    text = str(error)
    assert "8 labelled vectors (need at least 12)" in text
    assert "class 'covid' has 2 patient(s); add 1 more" in text
    assert "class 'healthy' has 2 patient(s); add 1 more" in text


@pytest.mark.parametrize(
    ("values", "message"),
    [
        ((0.5,) * (N - 1), f"examples 2 have {N - 1} values; schema"),
        ((math.nan,) * N, "examples 2 hold values that are NaN, Inf or outside [0, 1]"),
        ((1.5,) * N, "examples 2 hold values that are NaN, Inf or outside [0, 1]"),
    ],
)
def test_bad_vectors_are_refused_naming_the_example(
    values: tuple[float, ...], message: str
) -> None:
    examples = list(_examples())
    examples[2] = replace(examples[2], values=values)
    error = _refusal(_request(examples=tuple(examples)))
    assert error.code is grpc.StatusCode.INVALID_ARGUMENT
    assert message in str(error)


def test_a_vector_of_another_schema_is_a_schema_mismatch() -> None:
    examples = list(_examples())
    examples[0] = replace(examples[0], schema_id="other.v1@123")
    error = _refusal(_request(examples=tuple(examples)))
    assert isinstance(error, SchemaMismatch)
    assert "example 0: vector made with schema other.v1@123" in str(error)


def _store_with_hashes(tmp_path: Path, examples: tuple[Example, ...]) -> SqliteFeatureStore:
    store = SqliteFeatureStore(tmp_path / "features.sqlite")
    for i, example in enumerate(examples):
        assert example.values is not None
        store.put(
            StoredVector(f"{i:064x}", "bio-v7", SCHEMA.schema_id, example.values, (), "2026-01-01")
        )
    return store


def test_video_hashes_are_resolved_through_the_feature_store(tmp_path: Path) -> None:
    sent = _examples()
    store = _store_with_hashes(tmp_path, sent)
    by_hash = tuple(replace(e, values=None, video_hash=f"{i:064x}") for i, e in enumerate(sent))
    mixed = (*by_hash[:6], *sent[6:])
    data = build_training_set(_request(examples=mixed), store)
    np.testing.assert_array_equal(data.vectors, np.asarray([e.values for e in sent], np.float32))
    # Sent vectors' models and the stored vectors' models together: the expert's lineage.
    assert (data.n_by_hash, data.biomarker_models) == (6, ("bio-v6", "bio-v7"))
    # Each row keeps the hash it was found by ("" for a vector sent as numbers), and the
    # version stores them with the rows, the family and the seed, for a refit.
    assert data.video_hashes == (*(f"{i:064x}" for i in range(6)), *[""] * 6)
    request = _request(examples=mixed, family="logreg", seed=5)
    kept = stored_training_set(request, data)
    assert kept.pixel_hashes == data.video_hashes
    assert (kept.fit.family, kept.fit.seed, kept.labels) == ("logreg", 5, data.labels)
    assert kept.sha256 == training_set_sha256(data.vectors, data.labels, data.patients)


def test_unknown_hashes_are_all_named_with_not_found(tmp_path: Path) -> None:
    sent = _examples()
    store = _store_with_hashes(tmp_path, sent[:10])
    by_hash = tuple(replace(e, values=None, video_hash=f"{i:064x}") for i, e in enumerate(sent))
    error = _refusal(_request(examples=by_hash), store)
    assert isinstance(error, NotFound)
    assert f"2 video hash(es): {10:064x}, {11:064x}" in str(error)
    wrong_model = _refusal(_request(examples=by_hash, biomarker_model_version="bio-v8"), store)
    assert isinstance(wrong_model, NotFound)
    assert "no vector stored (bio-v8) for 12 video hash(es)" in str(wrong_model)
    assert "and 7 more" in str(wrong_model)


def test_hashes_without_a_feature_store_are_a_failed_precondition() -> None:
    sent = _examples()
    by_hash = (replace(sent[0], values=None, video_hash="ab" * 32), *sent[1:])
    error = _refusal(_request(examples=by_hash), None)
    assert isinstance(error, FailedPrecondition)
    assert "no feature store" in str(error)


def test_a_stored_vector_of_another_schema_is_a_schema_mismatch(tmp_path: Path) -> None:
    store = SqliteFeatureStore(tmp_path / "features.sqlite")
    store.put(StoredVector("cd" * 32, "bio-v7", "other.v1@1", (0.5,) * 6, (), "2026-01-01"))
    sent = _examples()
    error = _refusal(_request(examples=(replace(sent[0], values=None, video_hash="cd" * 32),
                                        *sent[1:])), store)  # fmt: skip
    assert isinstance(error, SchemaMismatch)
    assert "stored vector made with schema other.v1@1" in str(error)


def test_a_replica_without_the_train_extra_answers_unimplemented(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    check_training_installed()  # this environment has it
    monkeypatch.setitem(training_worker.TRAINING_PACKAGES, "no_such_module_xyz", "xyz-pkg")
    with pytest.raises(TrainingUnavailable, match="xyz-pkg not installed") as caught:
        check_training_installed()
    assert caught.value.code is grpc.StatusCode.UNIMPLEMENTED
    assert not isinstance(caught.value, InvalidInput)


def test_a_training_set_over_the_stored_bound_is_refused_before_queueing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from expert_service import training_set
    from expert_service.registry import LocalRegistry
    from expert_service.training.jobs import TrainingLimits
    from expert_service.training.service import ExpertTraining

    class NeverFits:
        def fit(self, *args: object) -> object:
            raise AssertionError("nothing may be fitted")

        def release(self) -> None:
            """Nothing to stop."""

    def publish(*args: object) -> object:
        raise AssertionError("nothing may be registered")

    training = ExpertTraining(
        LocalRegistry(tmp_path),
        None,
        publish,
        TrainingLimits(),
        fitter=NeverFits(),  # type: ignore[arg-type]
    )
    monkeypatch.setattr(training_set, "MAX_TRAINING_SET_BYTES", 1000)
    try:
        with pytest.raises(InvalidInput, match="over the 0 MiB kept with an expert version"):
            training.submit("radiology", _request())
    finally:
        training.close()
