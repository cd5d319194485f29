"""fit_expert and train_expert_from_csv: ONNX fidelity, metrics, refusals and registration."""

from __future__ import annotations

import csv
from collections import Counter
from pathlib import Path

import numpy as np
import pytest

from expert_service.card import GROUND_TRUTH, METRIC_NAMES
from expert_service.lineage import training_set_sha256
from expert_service.predictor import ExpertPredictor
from expert_service.registry import LocalRegistry
from expert_service.training.catalog import ZOO_FAMILIES
from expert_service.training.checks import standardized_distance
from lus.errors import AlreadyExists, FailedPrecondition, InvalidInput
from lus.provenance import RESEARCH_DATA_NOTICE, SYNTHETIC_DATA_NOTICE
from lus.schema import load_schema
from trainer.experts import fit_expert, train_expert_from_csv

SCHEMA = load_schema()
MODEL = "gare2022-lus38-20261126T0040Z-4123ea"


def _data(
    n_patients: int = 40, per_patient: int = 3, seed: int = 0
) -> tuple[np.ndarray, list[str], list[str]]:
    """Synthetic vectors whose label depends on a few features; one label per patient."""
    rng = np.random.default_rng(seed)
    base = rng.random((n_patients, len(SCHEMA)))
    x = np.repeat(base, per_patient, axis=0) + rng.normal(
        0, 0.03, (n_patients * per_patient, len(SCHEMA))
    )
    x = np.clip(x, 0, 1).astype(np.float32)
    score = base[:, 0] + base[:, 4] - base[:, 9]
    cut = np.quantile(score, [1 / 3, 2 / 3])
    labels = np.repeat(
        np.array(["covid", "healthy", "other"])[np.searchsorted(cut, score)], per_patient
    )
    patients = [f"p{i:03d}" for i in range(n_patients) for _ in range(per_patient)]
    return x, labels.tolist(), patients


@pytest.mark.parametrize("family", ["mlp", "logreg"])
def test_onnx_probabilities_match_sklearn(family: str) -> None:
    x, labels, patients = _data()
    fitted = fit_expert(x, labels, family=family, seed=0, patient_ids=patients)
    assert fitted.classes == ("covid", "healthy", "other")
    assert (fitted.model_family, fitted.n_features) == (family, len(SCHEMA))
    fresh = np.random.default_rng(1).random((64, len(SCHEMA))).astype(np.float32)
    import onnxruntime as ort

    session = ort.InferenceSession(fitted.onnx_bytes, providers=["CPUExecutionProvider"])
    (probabilities,) = session.run(["probabilities"], {session.get_inputs()[0].name: fresh})
    np.testing.assert_allclose(probabilities, fitted.estimator.predict_proba(fresh), atol=1e-5)


def test_heldout_metrics_with_patient_ids() -> None:
    x, labels, patients = _data()
    fitted = fit_expert(x, labels, family="logreg", seed=0, patient_ids=patients)
    assert set(fitted.metrics) == {
        "heldout_accuracy",
        "heldout_roc_auc_macro",
        "n_fit",
        "n_heldout",
    }
    assert fitted.metrics["n_fit"] + fitted.metrics["n_heldout"] == len(labels)
    assert fitted.metrics["n_heldout"] % 3 == 0  # whole patients only
    assert fitted.metrics["heldout_roc_auc_macro"] > 0.7  # labels depend on 3 features


def test_training_metrics_without_patient_ids_and_determinism() -> None:
    x, labels, _ = _data(n_patients=20)
    first = fit_expert(x, labels, family="mlp", seed=3)
    assert set(first.metrics) == {"train_accuracy", "train_roc_auc_macro", "n_fit"}
    assert fit_expert(x, labels, family="mlp", seed=3).onnx_bytes == first.onnx_bytes


@pytest.mark.parametrize(
    ("labels", "message"),
    [
        (["a"] * 6, "need at least 2 classes"),
        (["a"] * 5 + ["b"], r"at least 2 examples each; got a: 5, b: 1"),
        (["a", "b"] * 2, "need \\(n, n_features\\) vectors and n labels"),
    ],
)
def test_fit_refuses_unusable_labels(labels: list[str], message: str) -> None:
    with pytest.raises(InvalidInput, match=message):
        fit_expert(np.full((6, 4), 0.5), labels)


def test_fit_refuses_unknown_family_and_nan() -> None:
    x, labels, _ = _data(n_patients=10)
    with pytest.raises(
        InvalidInput, match="unknown expert family 'forest'; choose one of decision_tree, svm"
    ):
        fit_expert(x, labels, family="forest")
    x[0, 0] = np.nan
    with pytest.raises(InvalidInput, match="NaN"):
        fit_expert(x, labels)


def _write_csv(
    path: Path,
    x: np.ndarray,
    labels: list[str],
    patients: list[str],
    notice: str | None,
    model: str | None = MODEL,
) -> None:
    """A CSV as ``lus extract`` writes it: a ``biomarker_model`` column (unless ``model`` is
    None) and an optional notice."""
    extra = [*(["notice"] if notice else []), *(["biomarker_model"] if model else [])]
    values = [*([notice] if notice else []), *([model] if model else [])]
    with path.open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow([*SCHEMA.keys, "diagnosis", "patient_id", *extra])
        for row, label, patient in zip(x, labels, patients, strict=True):
            writer.writerow([*(f"{v:.6f}" for v in row), label, patient, *values])


def test_train_from_csv_registers_a_servable_expert(tmp_path: Path) -> None:
    x, labels, patients = _data()
    csv_path = tmp_path / "vectors.csv"
    _write_csv(csv_path, x, labels, patients, SYNTHETIC_DATA_NOTICE)
    registry = LocalRegistry(tmp_path / "reg")
    card = train_expert_from_csv(
        csv_path,
        task="covid",
        registry=registry,
        schema=SCHEMA,
        label_column="diagnosis",
        family="logreg",
    )
    assert (card.task, card.version, card.schema_id) == ("covid", 1, SCHEMA.schema_id)
    assert card.training_summary is not None
    assert card.training_summary.n_patients == 40
    assert sum(card.training_summary.class_counts.values()) == len(labels)
    assert card.notice == SYNTHETIC_DATA_NOTICE
    assert "vectors.csv" in card.training_data and "40 patients" in card.training_data
    assert SYNTHETIC_DATA_NOTICE in card.training_data
    assert "heldout_accuracy" in card.metrics
    lineage = card.lineage
    assert lineage is not None and lineage.biomarker_models == (MODEL,)
    assert (lineage.label_column, lineage.n_examples) == ("diagnosis", len(labels))
    # The hash of exactly what was fit: the CSV's values as float32, labels, patients.
    read = np.asarray([[float(f"{v:.6f}") for v in row] for row in x], dtype=np.float32)
    assert lineage.training_set_sha256 == training_set_sha256(read, labels, patients)
    predictor = ExpertPredictor(registry)
    prediction = predictor.predict(
        "covid", 0, SCHEMA.schema_id, x[0].tolist(), biomarker_model=MODEL
    )
    assert prediction.notice == SYNTHETIC_DATA_NOTICE
    assert prediction.biomarker_model_version == MODEL
    with pytest.raises(FailedPrecondition, match=f"was fit on biomarker model {MODEL}"):
        predictor.predict("covid", 0, SCHEMA.schema_id, x[0].tolist(), biomarker_model="other")
    with pytest.raises(AlreadyExists):  # same data and seed give the same bytes
        train_expert_from_csv(
            csv_path,
            task="covid",
            registry=registry,
            schema=SCHEMA,
            label_column="diagnosis",
            family="logreg",
        )


def test_train_from_csv_defaults_to_research_notice(tmp_path: Path) -> None:
    x, labels, patients = _data(n_patients=12)
    csv_path = tmp_path / "vectors.csv"
    _write_csv(csv_path, x, labels, patients, None)
    card = train_expert_from_csv(
        csv_path,
        task="covid",
        registry=LocalRegistry(tmp_path / "reg"),
        schema=SCHEMA,
        label_column="diagnosis",
        patient_column=None,
        family="logreg",
    )
    assert card.notice == RESEARCH_DATA_NOTICE
    assert "train_accuracy" in card.metrics


def test_train_from_csv_names_missing_columns_and_bad_values(tmp_path: Path) -> None:
    x, labels, patients = _data(n_patients=6)
    csv_path = tmp_path / "vectors.csv"
    _write_csv(csv_path, x, labels, patients, None)
    registry = LocalRegistry(tmp_path / "reg")
    with pytest.raises(InvalidInput, match=r"vectors\.csv lacks column\(s\) label, visit"):
        train_expert_from_csv(
            csv_path,
            task="covid",
            registry=registry,
            schema=SCHEMA,
            label_column="label",
            patient_column="visit",
        )
    text = csv_path.read_text().splitlines()
    text[2] = "oops" + text[2][text[2].index(",") :]
    csv_path.write_text("\n".join(text) + "\n")
    with pytest.raises(
        InvalidInput, match=f"vectors.csv line 3: {SCHEMA.keys[0]} is 'oops', not a number"
    ):
        train_expert_from_csv(
            csv_path, task="covid", registry=registry, schema=SCHEMA, label_column="diagnosis"
        )
    with pytest.raises(InvalidInput, match="task name"):
        train_expert_from_csv(
            csv_path, task="Bad Name", registry=registry, schema=SCHEMA, label_column="diagnosis"
        )
    assert registry.tasks() == []


def test_train_from_csv_refuses_a_single_class(tmp_path: Path) -> None:
    x, _, patients = _data(n_patients=6)
    csv_path = tmp_path / "vectors.csv"
    _write_csv(csv_path, x, ["covid"] * len(patients), patients, None)
    with pytest.raises(InvalidInput, match="need at least 2 classes"):
        train_expert_from_csv(
            csv_path,
            task="covid",
            registry=LocalRegistry(tmp_path),
            schema=SCHEMA,
            label_column="diagnosis",
        )


def test_train_from_csv_skips_unlabelled_rows_and_records_sources(tmp_path: Path) -> None:
    x, labels, patients = _data(n_patients=12)
    labels[:3] = ["", "", ""]  # a multi-task CSV need not label every video for every task
    csv_path = tmp_path / "vectors.csv"
    with csv_path.open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["video", "patient_id", *SCHEMA.keys, "diagnosis", "model_version"])
        for i, (row, label, patient) in enumerate(zip(x, labels, patients, strict=True)):
            writer.writerow([f"v{i}.mp4", patient, *(f"{v:.6f}" for v in row), label, "bio-v7"])
    card = train_expert_from_csv(
        csv_path,
        task="covid",
        registry=LocalRegistry(tmp_path / "reg"),
        schema=SCHEMA,
        label_column="diagnosis",
        family="logreg",
    )
    assert f"{len(labels) - 3} vectors from 11 patients" in card.training_data
    assert "3 unlabelled rows skipped" in card.training_data
    assert "Biomarker model: bio-v7" in card.training_data
    # The column's name before lineage was kept is still read, into the lineage itself.
    assert card.lineage is not None and card.lineage.biomarker_models == ("bio-v7",)


def test_a_csv_that_names_no_biomarker_model_is_refused_unless_told(tmp_path: Path) -> None:
    x, labels, patients = _data(n_patients=12)
    csv_path = tmp_path / "vectors.csv"
    _write_csv(csv_path, x, labels, patients, None, model=None)
    registry = LocalRegistry(tmp_path / "reg")
    fit = {"task": "covid", "registry": registry, "schema": SCHEMA, "family": "logreg"}
    with pytest.raises(InvalidInput, match=r"vectors\.csv names no biomarker model"):
        train_expert_from_csv(csv_path, label_column="diagnosis", **fit)  # type: ignore[arg-type]
    card = train_expert_from_csv(
        csv_path,
        label_column="diagnosis",
        biomarker_model=GROUND_TRUTH,
        label_definition="covid: RT-PCR positive",
        **fit,  # type: ignore[arg-type]
    )
    assert card.lineage is not None and card.lineage.biomarker_models == (GROUND_TRUTH,)
    assert card.lineage.label_definition == "covid: RT-PCR positive"
    _write_csv(csv_path, x, labels, patients, None)
    with pytest.raises(InvalidInput, match="line 2: biomarker_model names another"):
        train_expert_from_csv(
            csv_path,
            label_column="diagnosis",
            biomarker_model="other",
            **fit,  # type: ignore[arg-type]
        )


def test_a_new_class_set_from_csv_needs_the_flag(tmp_path: Path) -> None:
    x, labels, patients = _data(n_patients=12)
    csv_path = tmp_path / "vectors.csv"
    two = ["covid" if label == "covid" else "healthy" for label in labels]
    _write_csv(csv_path, x, two, patients, None)
    registry = LocalRegistry(tmp_path / "reg")
    fit = {"task": "covid", "registry": registry, "schema": SCHEMA, "family": "logreg"}
    train_expert_from_csv(csv_path, label_column="diagnosis", **fit)  # type: ignore[arg-type]
    _write_csv(csv_path, x, labels, patients, None)
    with pytest.raises(FailedPrecondition, match="allow-class-change"):
        train_expert_from_csv(csv_path, label_column="diagnosis", **fit)  # type: ignore[arg-type]
    card = train_expert_from_csv(
        csv_path,
        label_column="diagnosis",
        allow_class_change=True,
        **fit,  # type: ignore[arg-type]
    )
    assert card.version == 2 and registry.task_state("covid").live_version() == 1


def test_zoo_is_the_default_and_registers_the_validation_winner(tmp_path: Path) -> None:
    x, labels, patients = _data(n_patients=30)
    csv_path = tmp_path / "vectors.csv"
    _write_csv(csv_path, x, labels, patients, None)
    card = train_expert_from_csv(
        csv_path,
        task="covid",
        registry=LocalRegistry(tmp_path / "reg"),
        schema=SCHEMA,
        label_column="diagnosis",
    )
    assert card.model_family in ZOO_FAMILIES
    assert card.metrics["zoo_candidates"] == 19  # 6 seeded families x 3 + k-NN once
    assert card.metrics["heldout_roc_auc_macro"] > 0.6
    assert set(card.metrics) <= set(METRIC_NAMES)
    assert card.metrics["n_fit"] + card.metrics["n_heldout"] == len(labels)
    summary = card.training_summary
    assert summary is not None and summary.n_patients == 30
    assert summary.class_counts == dict(sorted(Counter(labels).items()))
    np.testing.assert_allclose(summary.feature_mean, x.mean(axis=0), atol=1e-5)
    distances = standardized_distance(
        x, np.asarray(summary.feature_mean), np.asarray(summary.feature_std)
    )
    assert np.mean(distances <= summary.ood_threshold) >= 0.98  # the 99th percentile
    assert (
        standardized_distance(
            np.full((1, len(SCHEMA)), 5.0),
            np.asarray(summary.feature_mean),
            np.asarray(summary.feature_std),
        )[0]
        > summary.ood_threshold
    )


@pytest.mark.parametrize(
    ("n_patients", "message"),
    [
        (
            6,
            r"training set too small: 6 labelled vectors \(need at least 12\); class 'covid' "
            r"has 2 patient\(s\); add 1 more",
        ),
        (8, r"class 'healthy' has 2 patient\(s\); add 1 more"),
    ],
)
def test_too_small_sets_are_refused_saying_what_is_missing(n_patients: int, message: str) -> None:
    x, labels, patients = _data(n_patients=n_patients, per_patient=1)
    with pytest.raises(InvalidInput, match=message):
        fit_expert(x, labels, family="zoo", patient_ids=patients)


def test_zoo_needs_patient_ids() -> None:
    x, labels, _ = _data(n_patients=12)
    with pytest.raises(InvalidInput, match="give patient ids"):
        fit_expert(x, labels, family="zoo")


@pytest.mark.parametrize("family", ["decision_tree", "svm", "random_forest", "adaboost", "knn"])
def test_every_zoo_family_exports_to_onnx(family: str) -> None:
    x, labels, patients = _data(n_patients=15)
    fitted = fit_expert(x, labels, family=family, patient_ids=patients)
    assert fitted.model_family == family and fitted.summary is not None
