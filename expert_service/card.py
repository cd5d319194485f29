"""The expert card: everything a reviewer needs to judge a stored ONNX expert, as JSON; and the
draft a registration starts from."""

from __future__ import annotations

import json
import math
import re
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from lus.errors import InvalidInput

if TYPE_CHECKING:  # the training set module imports this one (through lineage)
    from expert_service.training_set import StoredTrainingSet

CARD_FORMAT = 2
"""Bumped when a field changes meaning; readers refuse formats they do not know. Format 2 adds
``lineage``, which decides what an expert may answer, so a build that cannot read it must not
serve the card (it refuses the format instead of ignoring the field)."""
READABLE_FORMATS = (1, 2)
"""Format 1 cards (before lineage) are still read: they carry no lineage and answer nothing."""

GROUND_TRUTH = "ground-truth"
"""``Lineage.biomarker_models`` entry of an expert fit on annotated findings (ground-truth
biomarker labels) rather than a model's output. Such an expert also answers vectors that name
no biomarker model (findings a clinician entered); every other expert refuses them."""

METRIC_NAMES: Mapping[str, str] = {
    "heldout_accuracy": "accuracy on whole patients kept out of fitting the evaluated model "
    "(the zoo: its validation patients, on which it also picked the winner)",
    "heldout_roc_auc_macro": "mean one-vs-rest ROC AUC over the classes present, on the same "
    "held-out patients",
    "train_accuracy": "accuracy on the fitting vectors themselves; reported only when no "
    "patient-level hold-out was possible (optimistic)",
    "train_roc_auc_macro": "mean one-vs-rest ROC AUC on the fitting vectors (optimistic)",
    "n_fit": "distinct vectors the evaluated model was fit on",
    "n_heldout": "vectors of the held-out patients",
    "zoo_candidates": "family x seed candidates the zoo compared on the held-out patients",
    "zoo_seed": "seed of the zoo's winning candidate",
}
"""The one set of metric names every fit path writes and RegisterExpert accepts, with meanings.

``heldout_*`` and ``train_*`` never appear together: a version reports held-out figures when
its training set allowed a patient-level split, else training figures, so a reviewer can tell
at a glance which kind of number the card holds. The stored model is fit on every example
(``Lineage.n_examples``); the evaluated one on ``n_fit`` of them."""

TASK_PATTERN = re.compile(r"^[a-z0-9][a-z0-9_-]{0,62}$")
"""Task names double as folder names, so they are kept short, lower-case and path-safe."""


def validate_task(task: str) -> str:
    """Return ``task`` if it is a valid task name, else raise ``InvalidInput``."""
    if not isinstance(task, str) or not TASK_PATTERN.fullmatch(task):
        raise InvalidInput(
            f"task name {task!r} is not valid: use 1-63 characters from a-z, 0-9, '_' and '-', "
            "starting with a letter or digit"
        )
    return task


def utc_now() -> str:
    """The current time as ISO 8601 UTC with seconds, e.g. ``2026-11-25T23:10:00+00:00``."""
    return datetime.now(UTC).isoformat(timespec="seconds")


@dataclass(frozen=True)
class TrainingSummary:
    """What an expert was fit on: enough to explain answers and flag unfamiliar vectors.

    Attributes:
        class_counts: Training vectors per class.
        n_patients: Distinct patients in the training set.
        feature_mean: Mean of each input feature (the baseline for per-biomarker contributions).
        feature_std: Standard deviation of each input feature.
        ood_threshold: A vector whose distance from the training vectors (as computed by the
            serving tier) exceeds this is flagged as out of distribution.
    """

    class_counts: Mapping[str, int]
    n_patients: int
    feature_mean: tuple[float, ...]
    feature_std: tuple[float, ...]
    ood_threshold: float

    def to_dict(self) -> dict[str, Any]:
        return {
            "class_counts": dict(self.class_counts),
            "n_patients": self.n_patients,
            "feature_mean": list(self.feature_mean),
            "feature_std": list(self.feature_std),
            "ood_threshold": self.ood_threshold,
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> TrainingSummary:
        return cls(
            class_counts={str(k): int(v) for k, v in data["class_counts"].items()},
            n_patients=int(data["n_patients"]),
            feature_mean=tuple(float(v) for v in data["feature_mean"]),
            feature_std=tuple(float(v) for v in data["feature_std"]),
            ood_threshold=float(data["ood_threshold"]),
        )


@dataclass(frozen=True)
class CompatibleModel:
    """Another biomarker model an expert may answer for, and why that is safe.

    Attributes:
        version: A served biomarker model version (``ModelRef.version``).
        evidence: What it was accepted on, e.g. "held-out accuracy 0.87 vs 0.88 on the same
            40 patients".
    """

    version: str
    evidence: str


@dataclass(frozen=True)
class Lineage:
    """Where an expert version came from, in fields a program can check.

    Predict refuses any vector whose biomarker model is not in ``answerable``: vectors of
    another model (a retrained or quantized one) look alike but are not, and an expert fit on
    one model's vectors answers another's confidently and wrongly.

    Attributes:
        biomarker_models: Served versions (``ModelRef.version``) of the biomarker model(s) whose
            vectors it was fit on; ``GROUND_TRUTH`` for annotated findings.
        compatible_models: Other biomarker models it may answer for, each with its evidence.
        training_set_sha256: ``expert_service.lineage.training_set_sha256`` of the training set
            (empty only when a RegisterExpert caller did not send it).
        label_column: The label column of the training data.
        label_definition: What the label values mean.
        n_examples: Vectors the stored model was fit on.
    """

    biomarker_models: tuple[str, ...]
    compatible_models: tuple[CompatibleModel, ...] = ()
    training_set_sha256: str = ""
    label_column: str = ""
    label_definition: str = ""
    n_examples: int = 0

    def __post_init__(self) -> None:
        object.__setattr__(self, "biomarker_models", tuple(self.biomarker_models))
        object.__setattr__(self, "compatible_models", tuple(self.compatible_models))

    @property
    def answerable(self) -> frozenset[str]:
        """Every biomarker model version whose vectors this expert answers."""
        return frozenset((*self.biomarker_models, *(c.version for c in self.compatible_models)))

    def to_dict(self) -> dict[str, Any]:
        return {
            "biomarker_models": list(self.biomarker_models),
            "compatible_models": [asdict(c) for c in self.compatible_models],
            "training_set_sha256": self.training_set_sha256,
            "label_column": self.label_column,
            "label_definition": self.label_definition,
            "n_examples": self.n_examples,
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Lineage:
        return cls(
            biomarker_models=tuple(str(v) for v in data["biomarker_models"]),
            compatible_models=tuple(
                CompatibleModel(str(c["version"]), str(c["evidence"]))
                for c in data.get("compatible_models", ())
            ),
            training_set_sha256=str(data.get("training_set_sha256", "")),
            label_column=str(data.get("label_column", "")),
            label_definition=str(data.get("label_definition", "")),
            n_examples=int(data.get("n_examples", 0)),
        )


@dataclass(frozen=True)
class ExpertDraft:
    """An expert to register: the ONNX model and what its card says about it.

    The one shape every registration travels in, from ``lus train expert``, RegisterExpert and
    TrainExpert to ``ExpertRegistry.register``. The registry adds the rest of the card: version,
    sha256, creation time and owner (the caller's team). Nothing is checked here; the registry
    checks everything (``registry.common.draft_card``) before it stores anything.

    Attributes:
        task: Clinical question the expert answers, e.g. ``covid``.
        onnx_bytes: The model: float32 input ``[N, n_features]``, outputs ``label`` and
            ``probabilities`` ``[N, len(classes)]``.
        schema_id: Id of the biomarker schema its input vectors must be made with.
        classes: Output labels, in the order of the model's probability columns.
        n_features: Length of the input vector.
        model_family: How it was fitted, e.g. ``mlp``.
        metrics: Evaluation figures, named as in ``METRIC_NAMES``.
        description: What it is for, in plain words.
        training_data: Where the training vectors came from.
        notice: Plain-language use restriction returned with every answer.
        training_summary: Class counts, patients and feature statistics of the training set.
        lineage: What it was fit on; required (the registry refuses a draft without
            ``lineage.biomarker_models``).
        allow_class_change: Accept classes other than the live version's; the new version then
            goes live only by an explicit alias move.
        training_set: The examples it was fit on, stored with the version so that it can be
            refit on another biomarker model (``trainer.refit``); the fit paths that have them
            send them (``lus train expert``, TrainExpert). Its fingerprint must be
            ``lineage.training_set_sha256``.
    """

    task: str
    onnx_bytes: bytes = field(repr=False)
    schema_id: str
    classes: tuple[str, ...]
    n_features: int
    model_family: str
    metrics: Mapping[str, float] = field(default_factory=dict)
    description: str = ""
    training_data: str = ""
    notice: str = ""
    training_summary: TrainingSummary | None = None
    lineage: Lineage | None = None
    allow_class_change: bool = False
    training_set: StoredTrainingSet | None = field(default=None, repr=False, compare=False)

    def __post_init__(self) -> None:
        # Copies, so a caller that goes on changing its list or dict cannot change the draft.
        object.__setattr__(self, "classes", tuple(self.classes))
        object.__setattr__(self, "metrics", dict(self.metrics))


@dataclass(frozen=True)
class ExpertCard:
    """Metadata of one immutable expert version, stored next to its ``model.onnx``.

    Attributes:
        task: Clinical question the expert answers, e.g. ``covid``; a valid task name.
        version: 1, 2, ... assigned by the registry.
        schema_id: Id of the biomarker schema its input vectors must be made with.
        classes: Output labels, in the order of the model's probability columns.
        model_family: How it was fitted, e.g. ``mlp`` or ``logreg``.
        metrics: Evaluation figures, named as in ``METRIC_NAMES`` (cards written before that
            may hold other names).
        created_at: Registration time, ISO 8601 UTC.
        owner: Who registered it.
        description: What it is for, in plain words.
        training_data: Where the training vectors came from.
        notice: Plain-language use restriction returned with every answer.
        sha256: Hex digest of the ONNX bytes, checked on every read.
        n_features: Length of the input vector (the schema's size).
        training_summary: Class counts, patients and feature statistics of the training set.
        lineage: What it was fit on; None only on cards written before lineage was kept, and
            such a version answers nothing (it cannot say which vectors it may take).
    """

    task: str
    version: int
    schema_id: str
    classes: tuple[str, ...]
    model_family: str
    sha256: str
    n_features: int
    metrics: Mapping[str, float] = field(default_factory=dict)
    created_at: str = field(default_factory=utc_now)
    owner: str = ""
    description: str = ""
    training_data: str = ""
    notice: str = ""
    training_summary: TrainingSummary | None = None
    lineage: Lineage | None = None

    def __post_init__(self) -> None:
        validate_task(self.task)
        if self.version < 1:
            raise ValueError(f"expert version must be >= 1, got {self.version}")
        if len(self.classes) < 2 or len(set(self.classes)) != len(self.classes):
            raise ValueError(f"an expert needs 2 or more distinct classes, got {self.classes!r}")
        if self.n_features < 1:
            raise ValueError(f"n_features must be >= 1, got {self.n_features}")
        if not re.fullmatch(r"[0-9a-f]{64}", self.sha256):
            raise ValueError("sha256 must be 64 lower-case hex digits")
        # Freeze the mapping's contents too: a card must not change once it is stored.
        object.__setattr__(self, "metrics", {str(k): float(v) for k, v in self.metrics.items()})
        object.__setattr__(self, "classes", tuple(str(c) for c in self.classes))

    def to_json(self) -> str:
        """Serialize to JSON text (sorted keys, NaN metrics written as null)."""
        data: dict[str, Any] = {"format": CARD_FORMAT, **asdict(self)}
        data["classes"] = list(self.classes)
        data["metrics"] = {k: (v if math.isfinite(v) else None) for k, v in self.metrics.items()}
        summary = self.training_summary
        data["training_summary"] = summary.to_dict() if summary is not None else None
        data["lineage"] = self.lineage.to_dict() if self.lineage is not None else None
        return json.dumps(data, sort_keys=True, indent=2)

    @classmethod
    def from_json(cls, text: str) -> ExpertCard:
        """Parse JSON written by ``to_json``.

        Raises:
            ValueError: The text is not a card of a known format.
        """
        try:
            data = json.loads(text)
            if data.pop("format", None) not in READABLE_FORMATS:
                readable = ", ".join(map(str, READABLE_FORMATS))
                raise ValueError(f"unknown expert card format (this build reads {readable})")
            metrics = data.pop("metrics", None) or {}
            classes = tuple(data.pop("classes"))
            summary = data.pop("training_summary", None)
            lineage = data.pop("lineage", None)
            return cls(
                training_summary=TrainingSummary.from_dict(summary) if summary else None,
                lineage=Lineage.from_dict(lineage) if lineage else None,
                **data,
                classes=classes,
                metrics={k: (math.nan if v is None else float(v)) for k, v in metrics.items()},
            )
        except (TypeError, KeyError, AttributeError, json.JSONDecodeError, InvalidInput) as err:
            raise ValueError(f"not a valid expert card: {err}") from err
