"""The expert zoo: seven scikit-learn families x three seeds, the best kept by validation.

Families as in the paper (scikit-learn defaults otherwise): decision tree, SVM with
probabilities, random forest, AdaBoost, k-NN, MLP, and MLP-large (128, 64, 32) with an adaptive
learning rate. Validation patients never appear in the fitting rows, and oversampling draws
from the fitting rows only.
"""

from __future__ import annotations

import logging
import math
import time
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from sklearn.ensemble import AdaBoostClassifier, RandomForestClassifier
from sklearn.exceptions import ConvergenceWarning
from sklearn.linear_model import LogisticRegression
from sklearn.neighbors import KNeighborsClassifier
from sklearn.neural_network import MLPClassifier
from sklearn.svm import SVC
from sklearn.tree import DecisionTreeClassifier

from expert_service.training.catalog import EXTRA_FAMILIES, SEEDS, ZOO_FAMILIES
from lus.errors import InvalidInput
from trainer.folds import validation_split
from trainer.metrics import macro_auc
from trainer.oversample import oversample_classes

logger = logging.getLogger(__name__)

SEEDLESS = frozenset({"knn"})
"""Families whose fit does not depend on the seed: fitted once, not three times."""

Progress = Callable[[float, str], None]
"""Told the share of the work done (0 to 1) and what was just done, e.g. by a training job."""


def make_estimator(family: str, seed: int) -> Any:
    """An unfitted estimator of ``family`` seeded with ``seed``.

    Raises:
        InvalidInput: An unknown family (the message lists the known ones).
    """
    builders: dict[str, Any] = {
        "decision_tree": lambda: DecisionTreeClassifier(random_state=seed),
        "svm": lambda: SVC(probability=True, random_state=seed),
        "random_forest": lambda: RandomForestClassifier(random_state=seed),
        "adaboost": lambda: AdaBoostClassifier(random_state=seed),
        "knn": KNeighborsClassifier,
        "mlp": lambda: MLPClassifier(random_state=seed),
        # The paper's "adaptive" rate; scikit-learn applies it to the sgd solver only, so with
        # the default adam it records intent and changes nothing, as in the paper's setup.
        "mlp_large": lambda: MLPClassifier(
            hidden_layer_sizes=(128, 64, 32), learning_rate="adaptive", random_state=seed
        ),
        "mlp_small": lambda: MLPClassifier(
            hidden_layer_sizes=(32,), alpha=1e-3, max_iter=1000, random_state=seed
        ),
        "logreg": lambda: LogisticRegression(max_iter=2000, random_state=seed),
    }
    if family not in builders:
        known = ", ".join((*ZOO_FAMILIES, *EXTRA_FAMILIES, "zoo"))
        raise InvalidInput(f"unknown expert family {family!r}; choose one of {known}")
    return builders[family]()


def fit_estimator(family: str, seed: int, x: np.ndarray, y: np.ndarray) -> Any:
    """Fit one estimator; a non-converged MLP is logged, not raised."""
    model = make_estimator(family, seed)
    with warnings.catch_warnings():
        # Small clinical sets often stop at max_iter; validation shows whether that matters,
        # so it is logged rather than raised (this project turns warnings into errors).
        warnings.simplefilter("ignore", ConvergenceWarning)
        # SVC(probability=True) is deprecated in scikit-learn 1.9 but is what the paper used.
        warnings.filterwarnings("ignore", message=".*probability.*", category=FutureWarning)
        model.fit(x, y)
    n_iter = getattr(model, "n_iter_", None)
    if n_iter is not None and np.max(n_iter) >= getattr(model, "max_iter", math.inf):
        logger.info("%s (seed %d) stopped at max_iter before converging", family, seed)
    return model


def probabilities(model: Any, x: np.ndarray, labels: Sequence[str]) -> np.ndarray:
    """``predict_proba`` with columns reordered (and zero-filled) to ``labels``."""
    proba = model.predict_proba(x)
    out = np.zeros((len(x), len(labels)))
    where = {str(c): i for i, c in enumerate(model.classes_)}
    for j, label in enumerate(labels):
        if label in where:
            out[:, j] = proba[:, where[label]]
    return out


def validation_score(model: Any, x: np.ndarray, y: np.ndarray) -> tuple[float, float]:
    """(macro one-vs-rest AUC over classes present, accuracy) on validation rows."""
    labels = [str(c) for c in model.classes_]
    proba = probabilities(model, x, labels)
    one_hot = (y[:, np.newaxis] == np.asarray(labels)[np.newaxis, :]).astype(np.float64)
    accuracy = float(np.mean(np.asarray(labels)[proba.argmax(axis=1)] == y))
    return macro_auc(one_hot, proba), accuracy


@dataclass(frozen=True)
class Candidate:
    """One family x seed tried: its validation figures and fit time."""

    family: str
    seed: int
    val_auc: float
    val_accuracy: float
    fit_seconds: float


@dataclass
class ZooResult:
    """The winner (fitted on the fitting rows) and every candidate's figures.

    ``fit_rows`` (oversampled, so with repeats) and ``val_rows`` index the rows passed in.
    ``by_family`` holds each family's best seed on validation (fitted), so a report can show
    every family's row, as the paper's tables do, not only the winner picked on a few patients.
    """

    estimator: Any
    family: str
    seed: int
    candidates: list[Candidate] = field(default_factory=list)
    by_family: dict[str, tuple[Any, Candidate]] = field(default_factory=dict)
    fit_rows: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=np.int64))
    val_rows: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=np.int64))

    @property
    def n_fit(self) -> int:
        """Fitting rows after oversampling (repeats counted)."""
        return len(self.fit_rows)

    @property
    def n_val(self) -> int:
        return len(self.val_rows)

    @property
    def best(self) -> Candidate:
        return next(c for c in self.candidates if (c.family, c.seed) == (self.family, self.seed))


def _rank(c: Candidate) -> tuple[float, float]:
    return (c.val_auc if math.isfinite(c.val_auc) else -1.0, c.val_accuracy)


def split_for_validation(
    y: np.ndarray, groups: np.ndarray, *, fraction: float, seed: int
) -> tuple[np.ndarray, np.ndarray]:
    """Patient-level fit/validation rows whose fitting side holds every class.

    Raises:
        InvalidInput: No split among 10 tries keeps every class on the fitting side.
    """
    rows = np.arange(len(y))
    for attempt in range(10):
        fit_rows, val_rows = validation_split(
            rows, groups, y, fraction=fraction, seed=seed + 1000 * attempt
        )
        if len(val_rows) and set(y[fit_rows].tolist()) == set(y.tolist()):
            return fit_rows, val_rows
    raise InvalidInput(
        "could not hold out validation patients and keep every class in the fitting set; "
        "add patients to the smallest classes"
    )


def fit_zoo(
    x: np.ndarray,
    y: Sequence[str] | np.ndarray,
    groups: Sequence[str] | np.ndarray,
    *,
    families: Sequence[str] = ZOO_FAMILIES,
    seeds: Sequence[int] = SEEDS,
    val_fraction: float = 0.25,
    oversample: bool = True,
    split_seed: int = 0,
    progress: Progress | None = None,
) -> ZooResult:
    """Fit every family x seed on fitting patients and keep the best on validation patients.

    Args:
        x: ``(n, n_features)`` inputs (biomarker vectors or other features).
        y: Class label per row.
        groups: Patient id per row; validation holds whole patients.
        families: Families to try.
        seeds: Seeds per family.
        val_fraction: Share of patients held out for validation.
        oversample: Repeat fitting rows of smaller classes (validation rows never).
        split_seed: Seeds the validation split and the oversampling.
        progress: Called after each candidate with the share of candidates fitted.
    """
    x = np.asarray(x, dtype=np.float32)
    y_arr = np.asarray(y).astype(str)
    fit_rows, val_rows = split_for_validation(
        y_arr, np.asarray(groups).astype(str), fraction=val_fraction, seed=split_seed
    )
    if oversample:
        rng = np.random.default_rng(split_seed)
        fit_rows = fit_rows[oversample_classes(y_arr[fit_rows], rng)]
    best: tuple[Any, Candidate] | None = None
    by_family: dict[str, tuple[Any, Candidate]] = {}
    candidates = []
    plan = [(f, s) for f in families for s in (seeds[:1] if f in SEEDLESS else seeds)]
    for done, (family, seed) in enumerate(plan, start=1):
        started = time.perf_counter()
        model = fit_estimator(family, seed, x[fit_rows], y_arr[fit_rows])
        seconds = time.perf_counter() - started
        auc, accuracy = validation_score(model, x[val_rows], y_arr[val_rows])
        candidate = Candidate(family, seed, auc, accuracy, seconds)
        candidates.append(candidate)
        if best is None or _rank(candidate) > _rank(best[1]):
            best = (model, candidate)
        if family not in by_family or _rank(candidate) > _rank(by_family[family][1]):
            by_family[family] = (model, candidate)
        if progress is not None:
            progress(done / len(plan), f"fitted {family} seed {seed} ({done}/{len(plan)})")
    if best is None:
        raise InvalidInput("no expert family to try; name at least one")
    model, winner = best
    return ZooResult(model, winner.family, winner.seed, candidates, by_family, fit_rows, val_rows)
