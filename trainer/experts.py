"""Fits task experts on biomarker vectors with scikit-learn and exports them to ONNX.

Experts are small (an MLP or a logistic regression on a few dozen probabilities) and are stored
as ONNX, never pickle, so the serving tier needs only onnxruntime and numpy.
"""

from __future__ import annotations

import csv
import hashlib
import logging
import math
import warnings
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from skl2onnx import to_onnx
from sklearn.exceptions import ConvergenceWarning
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import accuracy_score
from sklearn.model_selection import StratifiedGroupKFold
from sklearn.neural_network import MLPClassifier

from expert_service.artifact import ExpertCard, validate_task
from expert_service.model import OnnxExpert
from expert_service.registry.base import ExpertRegistry
from lus.errors import InvalidInput
from lus.provenance import RESEARCH_DATA_NOTICE
from lus.schema import BiomarkerSchema
from trainer.metrics import macro_auc

logger = logging.getLogger(__name__)

FAMILIES = ("mlp", "logreg")
TARGET_OPSET = {"": 17, "ai.onnx.ml": 3}
"""Pinned so experts load on older onnxruntime releases too, not only the one that made them."""
NOTICE_COLUMN = "notice"
SOURCE_COLUMN = "model_version"
"""Optional CSV column naming the biomarker model that made each vector (``lus extract``)."""
ONNX_TOLERANCE = 1e-4
"""Largest allowed gap between ONNX and scikit-learn probabilities (float32 vs float64)."""


@dataclass(frozen=True)
class FittedExpert:
    """A fitted expert, ready to register.

    Attributes:
        onnx_bytes: The model as ONNX: float32 input ``[N, n_features]``, outputs ``label`` and
            ``probabilities`` ``[N, len(classes)]``.
        classes: Labels in the order of the probability columns.
        metrics: ``heldout_*`` figures on patients kept out of fitting when patient ids were
            given (the stored model is then refit on every patient), else ``train_*`` figures.
        model_family: ``mlp`` or ``logreg``.
        n_features: Input width.
        estimator: The scikit-learn model the ONNX was made from (for checks, never stored).
    """

    onnx_bytes: bytes
    classes: tuple[str, ...]
    metrics: dict[str, float]
    model_family: str
    n_features: int
    estimator: Any = field(repr=False, compare=False)


def _estimator(family: str, seed: int) -> Any:
    if family == "mlp":
        return MLPClassifier(hidden_layer_sizes=(32,), alpha=1e-3, max_iter=1000, random_state=seed)
    if family == "logreg":
        return LogisticRegression(max_iter=2000, random_state=seed)
    raise InvalidInput(f"unknown expert family {family!r}; choose one of {', '.join(FAMILIES)}")


def _fit(family: str, seed: int, x: np.ndarray, y: np.ndarray) -> Any:
    model = _estimator(family, seed)
    with warnings.catch_warnings():
        # Small clinical sets often stop at max_iter; the metrics show whether that matters,
        # so it is logged rather than raised (this project turns warnings into errors).
        warnings.simplefilter("ignore", ConvergenceWarning)
        model.fit(x, y)
    if np.max(model.n_iter_) >= model.max_iter:
        logger.warning("%s expert stopped at max_iter=%d before converging", family, model.max_iter)
    return model


def _scores(model: Any, x: np.ndarray, y: np.ndarray, prefix: str) -> dict[str, float]:
    probabilities = model.predict_proba(x)
    metrics = {f"{prefix}_accuracy": float(accuracy_score(y, model.predict(x)))}
    # One-vs-rest AUC per class that has positives and negatives here, then the mean: a
    # held-out split may lack a class, where sklearn's multi-class AUC would fail.
    one_hot = (y[:, np.newaxis] == model.classes_[np.newaxis, :]).astype(np.float64)
    auc = macro_auc(one_hot, probabilities)
    if math.isfinite(auc):
        metrics[f"{prefix}_roc_auc_macro"] = auc
    return metrics


def _heldout_split(
    y: np.ndarray, groups: np.ndarray, test_fraction: float, seed: int
) -> tuple[np.ndarray, np.ndarray] | None:
    n_splits = max(2, round(1 / test_fraction))
    if len(np.unique(groups)) < n_splits:
        return None
    splitter = StratifiedGroupKFold(n_splits=n_splits, shuffle=True, random_state=seed)
    with warnings.catch_warnings():
        # Rare classes are expected in clinical data; a fold is only used if it keeps them all.
        warnings.filterwarnings("ignore", message="The least populated class", category=UserWarning)
        for train, test in splitter.split(np.zeros(len(y)), y, groups):
            if len(np.unique(y[train])) == len(np.unique(y)):
                return train, test
    return None


def fit_expert(
    vectors: np.ndarray,
    labels: Sequence[str],
    *,
    family: str = "mlp",
    seed: int = 0,
    patient_ids: Sequence[str] | None = None,
    test_fraction: float = 0.25,
) -> FittedExpert:
    """Fit an expert mapping biomarker vectors to labels and export it to ONNX.

    Args:
        vectors: ``(n, n_features)`` biomarker probabilities.
        labels: One class label per row.
        family: ``mlp`` (one hidden layer of 32) or ``logreg``.
        seed: Seeds the model and the held-out split; same inputs and seed give the same bytes.
        patient_ids: One id per row; when given, about ``test_fraction`` of the patients are
            held out (whole patients, class-stratified) to measure the metrics.
        test_fraction: Share of patients held out.

    Raises:
        InvalidInput: Fewer than 2 classes, a class with fewer than 2 rows, shapes that do not
            match, values that are not finite, or an unknown family.
    """
    x = np.asarray(vectors, dtype=np.float32)
    y = np.asarray([str(label) for label in labels])
    if x.ndim != 2 or len(x) != len(y) or x.shape[1] == 0:
        raise InvalidInput(f"need (n, n_features) vectors and n labels; got {x.shape}, {len(y)}")
    if not np.all(np.isfinite(x)):
        raise InvalidInput("training vectors hold NaN or Inf values")
    counts = Counter(y.tolist())
    if len(counts) < 2 or min(counts.values()) < 2:
        listed = ", ".join(f"{k}: {v}" for k, v in sorted(counts.items())) or "none"
        raise InvalidInput(f"need at least 2 classes with at least 2 examples each; got {listed}")
    _estimator(family, seed)  # refuse an unknown family before any fitting

    metrics: dict[str, float] = {}
    split = None
    if patient_ids is not None:
        groups = np.asarray([str(p) for p in patient_ids])
        if len(groups) != len(y):
            raise InvalidInput(f"got {len(groups)} patient ids for {len(y)} rows")
        split = _heldout_split(y, groups, test_fraction, seed)
        if split is None:
            logger.warning("too few patients for a held-out split; reporting training metrics")
    if split is not None:
        train, test = split
        metrics.update(_scores(_fit(family, seed, x[train], y[train]), x[test], y[test], "heldout"))
        metrics.update(n_train=float(len(train)), n_test=float(len(test)))
    model = _fit(family, seed, x, y)
    if split is None:
        metrics.update(_scores(model, x, y, "train"), n_train=float(len(y)))

    onnx_bytes = to_onnx(
        model, x[:1], options={"zipmap": False}, target_opset=TARGET_OPSET
    ).SerializeToString()
    classes = tuple(str(c) for c in model.classes_)
    _check_onnx(onnx_bytes, model, x, classes)
    return FittedExpert(onnx_bytes, classes, metrics, family, x.shape[1], model)


def _check_onnx(onnx_bytes: bytes, model: Any, x: np.ndarray, classes: tuple[str, ...]) -> None:
    # The served model must answer exactly as the fitted one did; catch converter drift here.
    served = OnnxExpert(onnx_bytes, n_features=x.shape[1], classes=classes).predict_proba(x)
    gap = float(np.max(np.abs(served - model.predict_proba(x))))
    if not gap <= ONNX_TOLERANCE:
        raise RuntimeError(f"ONNX export differs from scikit-learn by {gap:.2e}")


@dataclass(frozen=True)
class _CsvData:
    vectors: np.ndarray
    labels: list[str]
    patients: list[str] | None
    notices: tuple[str, ...]  # distinct non-empty values of the notice column
    sources: tuple[str, ...]  # distinct biomarker model versions that made the vectors
    skipped: int  # rows without a label for this task


def _read_csv(
    csv_path: Path, schema: BiomarkerSchema, label_column: str, patient_column: str | None
) -> _CsvData:
    """Read a CSV with one column per biomarker key, as written by ``lus extract``."""
    with csv_path.open(newline="", encoding="utf-8") as handle:
        reader = csv.DictReader(handle)
        header = reader.fieldnames or []
        wanted = [*schema.keys, label_column, *([patient_column] if patient_column else [])]
        missing = [name for name in wanted if name not in header]
        if missing:
            more = f" and {len(missing) - 8} more" if len(missing) > 8 else ""
            raise InvalidInput(f"{csv_path.name} lacks column(s) {', '.join(missing[:8])}{more}")
        rows, labels, patients, skipped = [], [], [], 0
        notices: dict[str, None] = {}
        sources: dict[str, None] = {}
        for line, row in enumerate(reader, start=2):  # line 1 is the header
            label = (row[label_column] or "").strip()
            if not label:  # a multi-task CSV need not label every video for every task
                skipped += 1
                continue
            rows.append([_number(row[key], csv_path.name, line, key) for key in schema.keys])
            labels.append(label)
            if patient_column:
                patients.append(_required(row[patient_column], csv_path.name, line, patient_column))
            notices.update({(row.get(NOTICE_COLUMN) or "").strip(): None})
            sources.update({(row.get(SOURCE_COLUMN) or "").strip(): None})
    if not rows:
        raise InvalidInput(f"{csv_path.name} has no rows with a {label_column!r} label")
    return _CsvData(
        vectors=np.asarray(rows, dtype=np.float32).reshape(len(rows), len(schema)),
        labels=labels,
        patients=patients if patient_column else None,
        notices=tuple(n for n in notices if n),
        sources=tuple(v for v in sources if v),
        skipped=skipped,
    )


def _training_data(csv_path: Path, data: _CsvData) -> str:
    """A plain-language line on what the expert was fitted on, for its card."""
    digest = hashlib.sha256(csv_path.read_bytes()).hexdigest()[:12]
    counts = ", ".join(f"{k}: {v}" for k, v in sorted(Counter(data.labels).items()))
    text = f"{csv_path.name} (sha256 {digest}): {len(data.labels)} vectors"
    if data.patients is not None:
        text += f" from {len(set(data.patients))} patients"
    text += f"; {counts}"
    if data.skipped:
        text += f"; {data.skipped} unlabelled rows skipped"
    if data.sources:
        text += f". Biomarker model: {', '.join(data.sources)}"
    if data.notices:
        text += f". Data notice: {' | '.join(data.notices)}"
    return text


def _number(text: str | None, name: str, line: int, column: str) -> float:
    try:
        value = float(text or "")
    except ValueError:
        raise InvalidInput(f"{name} line {line}: {column} is {text!r}, not a number") from None
    if not math.isfinite(value) or not 0.0 <= value <= 1.0:
        raise InvalidInput(f"{name} line {line}: {column} is {value}; expected a probability")
    return value


def _required(text: str | None, name: str, line: int, column: str) -> str:
    value = (text or "").strip()
    if not value:
        raise InvalidInput(f"{name} line {line}: {column} is empty")
    return value


def train_expert_from_csv(
    csv_path: Path,
    *,
    task: str,
    registry: ExpertRegistry,
    schema: BiomarkerSchema,
    label_column: str,
    patient_column: str | None = "patient_id",
    family: str = "mlp",
    owner: str = "local",
    description: str = "",
    seed: int = 0,
    notice: str | None = None,
) -> ExpertCard:
    """Fit an expert on a CSV of biomarker vectors and register it as the task's next version.

    Args:
        csv_path: One row per vector: a column per biomarker key of ``schema`` (probabilities),
            ``label_column``, ``patient_column`` and optionally ``notice`` and
            ``model_version``. Rows with an empty label are skipped (other tasks' rows).
        task: Task name, e.g. ``covid``.
        registry: Where to store the expert.
        schema: The schema the vectors were made with; the expert will only accept its vectors.
        label_column: Column holding the class label.
        patient_column: Column of patient ids, used for a patient-level held-out split;
            ``None`` when there is none (metrics are then training metrics).
        family: ``mlp`` or ``logreg``.
        owner: Recorded on the card.
        description: Recorded on the card.
        seed: Seeds fitting and the split.
        notice: Use restriction for the card; else the CSV's ``notice`` column, else
            ``lus.provenance.RESEARCH_DATA_NOTICE``.

    Raises:
        InvalidInput: Bad task name, missing columns (named), unreadable values, fewer than 2
            classes or a class with fewer than 2 rows.
        AlreadyExists: The registry already holds this exact model for the task.
    """
    validate_task(task)  # fail before fitting, not after
    csv_path = Path(csv_path)
    data = _read_csv(csv_path, schema, label_column, patient_column)
    fitted = fit_expert(
        data.vectors, data.labels, family=family, seed=seed, patient_ids=data.patients
    )
    return registry.register(
        task,
        fitted.onnx_bytes,
        schema_id=schema.schema_id,
        classes=fitted.classes,
        n_features=fitted.n_features,
        model_family=fitted.model_family,
        metrics=fitted.metrics,
        owner=owner,
        description=description,
        training_data=_training_data(csv_path, data),
        notice=notice or " | ".join(data.notices) or RESEARCH_DATA_NOTICE,
    )
