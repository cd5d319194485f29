"""Fits task experts on biomarker vectors with scikit-learn and exports them to ONNX.

Experts are small (an MLP or a logistic regression on a few dozen probabilities) and are stored
as ONNX, never pickle, so the serving tier needs only onnxruntime and numpy.
"""

from __future__ import annotations

import csv
import logging
import math
import warnings
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from skl2onnx import to_onnx
from sklearn.metrics import accuracy_score
from sklearn.model_selection import StratifiedGroupKFold

from expert_service.card import ExpertCard, ExpertDraft, Lineage, TrainingSummary, validate_task
from expert_service.lineage import training_lineage
from expert_service.model import OnnxExpert
from expert_service.registry.base import ExpertRegistry
from expert_service.training.catalog import EXTRA_FAMILIES, ZOO_FAMILIES
from expert_service.training.checks import check_training_set, training_summary
from expert_service.training_set import (
    HELDOUT_FRACTION,
    FitSettings,
    StoredTrainingSet,
    check_size,
    file_name_sha256,
)
from lus.errors import InvalidInput
from lus.provenance import RESEARCH_DATA_NOTICE
from lus.schema import BiomarkerSchema
from trainer.metrics import macro_auc
from trainer.vectors_csv import describe_training_data, read_vectors_csv
from trainer.zoo import Progress, fit_estimator, fit_zoo, make_estimator

logger = logging.getLogger(__name__)

FAMILIES = ("zoo", *ZOO_FAMILIES, *EXTRA_FAMILIES)
"""``zoo`` tries the seven paper families x 3 seeds and keeps the best on validation patients."""
TARGET_OPSET = {"": 17, "ai.onnx.ml": 3}
"""Pinned so experts load on older onnxruntime releases too, not only the one that made them."""
ONNX_TOLERANCE = 1e-4
"""Largest allowed gap between ONNX and scikit-learn probabilities (float32 vs float64)."""
FITTING_SHARE = 0.9
"""Share of ``fit_expert``'s reported progress spent fitting; the rest is the ONNX export."""


@dataclass(frozen=True)
class FittedExpert:
    """A fitted expert, ready to register.

    Attributes:
        onnx_bytes: The model as ONNX: float32 input ``[N, n_features]``, outputs ``label`` and
            ``probabilities`` ``[N, len(classes)]``.
        classes: Labels in the order of the probability columns.
        metrics: Named as in ``expert_service.card.METRIC_NAMES``: ``heldout_*`` figures on
            patients kept out of fitting when patient ids allowed a split (a single family's
            stored model is then refit on every patient; the zoo's winner stays fit on its
            fitting patients), else ``train_*`` figures; ``n_fit`` and ``n_heldout`` count the
            vectors on each side.
        model_family: The family of the stored model (the zoo's winner for ``zoo``).
        n_features: Input width.
        estimator: The scikit-learn model the ONNX was made from (for checks, never stored).
        summary: Class counts, patients and feature statistics of the training vectors.
    """

    onnx_bytes: bytes
    classes: tuple[str, ...]
    metrics: dict[str, float]
    model_family: str
    n_features: int
    estimator: Any = field(repr=False, compare=False)
    summary: TrainingSummary | None = field(default=None, repr=False, compare=False)

    def draft(
        self,
        task: str,
        *,
        schema_id: str,
        lineage: Lineage,
        description: str = "",
        training_data: str = "",
        notice: str = "",
        allow_class_change: bool = False,
        training_set: StoredTrainingSet | None = None,
    ) -> ExpertDraft:
        """This expert as ``task``'s next version, for ``ExpertRegistry.register``; ``lineage``
        is ``expert_service.lineage.training_lineage`` of the rows it was fit on, and
        ``training_set`` those rows, to keep with the version."""
        return ExpertDraft(
            task=task,
            onnx_bytes=self.onnx_bytes,
            schema_id=schema_id,
            classes=self.classes,
            n_features=self.n_features,
            model_family=self.model_family,
            metrics=self.metrics,
            description=description,
            training_data=training_data,
            notice=notice,
            training_summary=self.summary,
            lineage=lineage,
            allow_class_change=allow_class_change,
            training_set=training_set,
        )


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
    test_fraction: float = HELDOUT_FRACTION,
    progress: Progress | None = None,
) -> FittedExpert:
    """Fit an expert mapping biomarker vectors to labels and export it to ONNX.

    Args:
        vectors: ``(n, n_features)`` biomarker probabilities.
        labels: One class label per row.
        family: ``zoo`` (needs ``patient_ids``) or one family of ``FAMILIES``.
        seed: Seeds the model and the held-out split; same inputs and seed give the same bytes.
        patient_ids: One id per row; when given, about ``test_fraction`` of the patients are
            held out (whole patients, class-stratified) to measure the metrics, or to pick
            the zoo's best family and seed.
        test_fraction: Share of patients held out. With the same labels, patient ids and seed
            the same patients are held out, whatever the vectors (what ``trainer.refit``
            relies on to compare a refit with the version it replaces).
        progress: Told the share done (0 to 1) and the step, after each model fitted (each zoo
            candidate) and after the export.

    Raises:
        InvalidInput: Fewer than 2 classes, a class with fewer than 2 rows, too few vectors or
            too few patients in a class (``expert_service.training.checks``), shapes that do
            not match,
            values that are not finite, an unknown family, or ``zoo`` without patient ids.
    """
    x = np.asarray(vectors, dtype=np.float32)
    y = np.asarray([str(label) for label in labels])
    if x.ndim != 2 or len(x) != len(y) or x.shape[1] == 0:
        raise InvalidInput(f"need (n, n_features) vectors and n labels; got {x.shape}, {len(y)}")
    if not np.all(np.isfinite(x)):
        raise InvalidInput("training vectors hold NaN or Inf values")
    groups = None if patient_ids is None else np.asarray([str(p) for p in patient_ids])
    if groups is not None and len(groups) != len(y):
        raise InvalidInput(f"got {len(groups)} patient ids for {len(y)} rows")
    check_training_set(y.tolist(), None if groups is None else groups.tolist())
    report = progress or _no_progress
    if family == "zoo":
        if groups is None:
            raise InvalidInput(
                "the zoo picks its model on validation patients; give patient ids "
                "(a patient_id column) or name one family"
            )
        return _fit_zoo_expert(x, y, groups, seed, test_fraction, report=report)
    make_estimator(family, seed)  # refuse an unknown family before any fitting

    metrics: dict[str, float] = {}
    split = None
    if groups is not None:
        split = _heldout_split(y, groups, test_fraction, seed)
        if split is None:
            logger.warning("too few patients for a held-out split; reporting training metrics")
    if split is not None:
        train, test = split
        metrics.update(
            _scores(fit_estimator(family, seed, x[train], y[train]), x[test], y[test], "heldout")
        )
        metrics.update(n_fit=float(len(train)), n_heldout=float(len(test)))
        report(FITTING_SHARE / 2, f"fitted {family} on the fitting patients")
    model = fit_estimator(family, seed, x, y)
    if split is None:
        metrics.update(_scores(model, x, y, "train"), n_fit=float(len(y)))
    report(FITTING_SHARE, f"fitted {family} on every patient")

    summary = training_summary(x, y.tolist(), None if groups is None else groups.tolist())
    return _package(model, x, metrics, family, summary, report=report)


def _no_progress(fraction: float, stage: str) -> None:
    """The default ``progress``: nobody is told."""


def _fit_zoo_expert(
    x: np.ndarray,
    y: np.ndarray,
    groups: np.ndarray,
    seed: int,
    val_fraction: float,
    *,
    report: Progress,
) -> FittedExpert:
    result = fit_zoo(
        x,
        y,
        groups,
        val_fraction=val_fraction,
        split_seed=seed,
        progress=lambda fraction, stage: report(FITTING_SHARE * fraction, stage),
    )
    best = result.best
    # The winner was picked on these patients, so its held-out figures are the best of
    # ``zoo_candidates`` tries: the card says how many.
    metrics = {
        "heldout_accuracy": best.val_accuracy,
        "n_fit": float(len(np.unique(result.fit_rows))),  # oversampling repeats not counted
        "n_heldout": float(result.n_val),
        "zoo_seed": float(best.seed),
        "zoo_candidates": float(len(result.candidates)),
    }
    if math.isfinite(best.val_auc):
        metrics["heldout_roc_auc_macro"] = best.val_auc
    summary = training_summary(x, y.tolist(), groups.tolist())
    return _package(result.estimator, x, metrics, best.family, summary, report=report)


def _package(
    model: Any,
    x: np.ndarray,
    metrics: dict[str, float],
    family: str,
    summary: TrainingSummary,
    *,
    report: Progress,
) -> FittedExpert:
    with warnings.catch_warnings():
        # skl2onnx reads SVC's probA_/probB_, deprecated in scikit-learn 1.9 (still present).
        warnings.filterwarnings("ignore", message="Attribute `prob", category=FutureWarning)
        onnx_bytes = to_onnx(
            model, x[:1], options={"zipmap": False}, target_opset=TARGET_OPSET
        ).SerializeToString()
    classes = tuple(str(c) for c in model.classes_)
    _check_onnx(onnx_bytes, model, x, classes)
    report(1.0, f"exported {family} to ONNX and checked it")
    return FittedExpert(onnx_bytes, classes, metrics, family, x.shape[1], model, summary)


def _check_onnx(onnx_bytes: bytes, model: Any, x: np.ndarray, classes: tuple[str, ...]) -> None:
    # The served model must answer exactly as the fitted one did; catch converter drift here.
    served = OnnxExpert(onnx_bytes, n_features=x.shape[1], classes=classes).predict_proba(x)
    gap = float(np.max(np.abs(served - model.predict_proba(x))))
    if not gap <= ONNX_TOLERANCE:
        raise RuntimeError(f"ONNX export differs from scikit-learn by {gap:.2e}")


def train_expert_from_csv(
    csv_path: Path,
    *,
    task: str,
    registry: ExpertRegistry,
    schema: BiomarkerSchema,
    label_column: str,
    patient_column: str | None = "patient_id",
    family: str = "zoo",
    owner: str = "local",
    description: str = "",
    seed: int = 0,
    notice: str | None = None,
    label_definition: str = "",
    biomarker_model: str | None = None,
    allow_class_change: bool = False,
) -> ExpertCard:
    """Fit an expert on a CSV of biomarker vectors and register it as the task's next version.

    Args:
        csv_path: One row per vector: a column per biomarker key of ``schema`` (probabilities),
            ``label_column``, ``patient_column``, ``biomarker_model`` (the model that made the
            row, as ``lus extract`` writes it) and optionally ``notice``. Rows with an empty
            label are skipped (other tasks' rows).
        task: Task name, e.g. ``covid``.
        registry: Where to store the expert.
        schema: The schema the vectors were made with; the expert will only accept its vectors.
        label_column: Column holding the class label.
        patient_column: Column of patient ids, used for a patient-level held-out split;
            ``None`` when there is none (metrics are then training metrics).
        family: ``zoo`` (default: seven families x 3 seeds, best on validation patients) or
            one family of ``FAMILIES``.
        owner: Recorded on the card.
        description: Recorded on the card.
        seed: Seeds fitting and the split.
        notice: Use restriction for the card; else the CSV's ``notice`` column, else
            ``lus.provenance.RESEARCH_DATA_NOTICE``.
        label_definition: What the label values mean, for the card's lineage.
        biomarker_model: The model version that made the vectors, for a CSV without a
            ``biomarker_model`` column (``ground-truth`` for annotated findings).
        allow_class_change: Register a version whose class set differs from the live one's
            (it then goes live only by a promote).

    The version keeps its training set (``expert_service.training_set``): the rows as fit, the
    sha256 of each row's ``video`` file name where the CSV has that column (``lus extract``
    writes it), the ``content_sha256`` and ``pixel_hash`` columns where present, and the
    family and seed, so ``lus experts refit`` can fit it again on another biomarker model.

    Raises:
        InvalidInput: Bad task name, missing columns (named), unreadable values, no biomarker
            model named, or a set too small to fit on (``expert_service.training.checks``; the
            message says what is missing).
        FailedPrecondition: Another class set than the live version's, without
            ``allow_class_change``.
        AlreadyExists: The registry already holds this exact model for the task.
    """
    validate_task(task)  # fail before fitting, not after
    csv_path = Path(csv_path)
    data = read_vectors_csv(
        csv_path, schema, label_column, patient_column, biomarker_model=biomarker_model
    )
    lineage = training_lineage(
        data.vectors,
        data.labels,
        data.patients,
        biomarker_models=data.models,
        label_column=label_column,
        label_definition=label_definition,
    )
    kept = StoredTrainingSet(
        vectors=data.vectors,
        labels=tuple(data.labels),
        patients=None if data.patients is None else tuple(data.patients),
        fit=FitSettings(family=family, seed=seed),
        **_row_sources(csv_path, label_column, len(data.labels)),
    )
    check_size(len(kept.to_bytes()), len(kept))  # before fitting, not after
    fitted = fit_expert(
        data.vectors, data.labels, family=family, seed=seed, patient_ids=data.patients
    )
    draft = fitted.draft(
        task,
        schema_id=schema.schema_id,
        lineage=lineage,
        description=description,
        training_data=describe_training_data(csv_path, data),
        notice=notice or " | ".join(data.notices) or RESEARCH_DATA_NOTICE,
        allow_class_change=allow_class_change,
        training_set=kept,
    )
    return registry.register(draft, owner=owner)


VIDEO_COLUMN = "video"
"""The file-name column of a vectors CSV (``lus extract``: path relative to the manifest)."""
HASH_COLUMNS = {"content_sha256": "content_sha256", "pixel_hash": "pixel_hashes"}
"""Optional vectors-CSV columns kept per row -> ``StoredTrainingSet`` field."""


def _row_sources(csv_path: Path, label_column: str, n_rows: int) -> dict[str, tuple[str, ...]]:
    """Per labelled row of the CSV (the rows ``read_vectors_csv`` keeps, in order), what says
    which video it was: ``name_sha256`` of the ``video`` column, and the ``content_sha256``
    and ``pixel_hash`` columns when present (lower-cased; "" where a cell is empty)."""
    names: list[str] = []
    hashes: dict[str, list[str]] = {field: [] for field in HASH_COLUMNS.values()}
    with csv_path.open(newline="", encoding="utf-8") as handle:
        reader = csv.DictReader(handle)
        header = reader.fieldnames or []
        for row in reader:
            if not (row.get(label_column) or "").strip():
                continue  # read_vectors_csv skips these too
            name = (row.get(VIDEO_COLUMN) or "").strip()
            names.append(file_name_sha256(name) if name else "")
            for column, field_name in HASH_COLUMNS.items():
                if column in header:
                    hashes[field_name].append((row.get(column) or "").strip().lower())
    if len(names) != n_rows:  # the file changed between the two reads
        raise InvalidInput(f"{csv_path.name} changed while it was read; run again")
    return {"name_sha256": tuple(names), **{k: tuple(v) for k, v in hashes.items()}}
