"""How far generated clips look from real ones: a simple real-vs-synthetic domain classifier.

For each clip a few evenly spaced frames are reduced as the biomarker model sees them (8-bit
grey, ``size x size``) and described by the named features of :mod:`trainer.domain_features`.
Two classifiers then try to tell the domains apart:

* logistic regression on standardised features (the headline figure), and
* gradient boosting (shallow trees), which also catches non-linear differences.

Folds are grouped (a real patient, or a generated patient, never on both sides of a split), and
the pooled out-of-fold ROC AUC is reported with a 95 % interval from a bootstrap over those
groups (:class:`trainer.bootstrap.PatientBootstrap`). 0.5 means the classifier cannot tell a
generated clip from a real one; 1.0 means it always can: lower is better.

Per-feature AUCs (each feature alone as the score) say *what* separates the domains, which is
what a generator change should target.
"""

from __future__ import annotations

import csv
import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from sklearn.ensemble import HistGradientBoostingClassifier
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import StratifiedGroupKFold
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler
from threadpoolctl import threadpool_limits  # type: ignore[import-untyped]
from tqdm import tqdm

from lus.errors import InvalidInput
from lus.video import decode_video
from lus.video.preprocess import resize_frames
from trainer.bootstrap import Interval, PatientBootstrap, binary_auc
from trainer.domain_features import FEATURE_NAMES, clip_features

CLASSIFIERS = ("logistic", "boosting")
"""The domain classifiers, headline first."""


@dataclass(frozen=True)
class ClipSet:
    """Feature vectors of one domain's clips.

    Attributes:
        features: ``(n, len(FEATURE_NAMES))``.
        groups: Patient (real) or generated patient (synthetic) of each clip.
        videos: Path of each clip, relative to its manifest's folder.
    """

    features: np.ndarray
    groups: tuple[str, ...]
    videos: tuple[str, ...]


@dataclass(frozen=True)
class FeatureGap:
    """One feature alone as a real-vs-synthetic score.

    Attributes:
        name: The feature (:data:`trainer.domain_features.FEATURE_NAMES`).
        auc: ROC AUC for "synthetic" (above 0.5: higher in synthetic clips).
        real_median: Median over real clips.
        synthetic_median: Median over synthetic clips.
    """

    name: str
    auc: float
    real_median: float
    synthetic_median: float

    @property
    def separation(self) -> float:
        """``|AUC - 0.5|``: 0 no separation, 0.5 perfect either way."""
        return abs(self.auc - 0.5)


@dataclass(frozen=True)
class DomainGap:
    """What the domain classifiers reached.

    Attributes:
        auc: Pooled out-of-fold AUC with its group-bootstrap interval, per classifier.
        features: Every feature's univariate gap, most separating first.
        n_real: Real clips. n_synthetic: Synthetic clips.
        real_groups: Real patient groups. synthetic_groups: Generated patients.
        folds: Cross-validation folds used.
    """

    auc: dict[str, Interval]
    features: tuple[FeatureGap, ...]
    n_real: int
    n_synthetic: int
    real_groups: int
    synthetic_groups: int
    folds: int

    def as_dict(self, top: int | None = None) -> dict[str, object]:
        return {
            "auc": {name: interval.as_dict() for name, interval in self.auc.items()},
            "n_real": self.n_real,
            "n_synthetic": self.n_synthetic,
            "real_groups": self.real_groups,
            "synthetic_groups": self.synthetic_groups,
            "folds": self.folds,
            "features": [
                {
                    "name": f.name,
                    "auc": f.auc,
                    "real_median": f.real_median,
                    "synthetic_median": f.synthetic_median,
                }
                for f in self.features[:top]
            ],
        }


def read_video_list(manifest: Path, limit: int | None = None) -> list[tuple[Path, str]]:
    """``(video path, patient id)`` of the first ``limit`` rows of a manifest CSV.

    Raises:
        InvalidInput: no ``video`` or ``patient_id`` column, or no rows.
    """
    with manifest.open(newline="") as handle:
        reader = csv.DictReader(handle)
        for column in ("video", "patient_id"):
            if column not in (reader.fieldnames or []):
                raise InvalidInput(f"{manifest}: manifest has no {column!r} column")
        rows = [(manifest.parent / r["video"], r["patient_id"]) for r in reader]
    if not rows:
        raise InvalidInput(f"{manifest}: manifest has no rows")
    return rows[:limit] if limit is not None else rows


def reduce_video(
    frames: np.ndarray, *, frames_per_video: int, size: int
) -> tuple[np.ndarray, np.ndarray | None]:
    """Evenly spaced frames and the frame after each, resized to ``size x size``.

    Returns:
        ``(frames, next frames)``; next frames are ``None`` for a one-frame video.
    """
    count = len(frames)
    last_start = max(count - 2, 0)
    picks = np.unique(np.linspace(0, last_start, frames_per_video).round().astype(int))
    reduced = resize_frames(frames[picks], size)
    if count < 2:
        return reduced, None
    return reduced, resize_frames(frames[picks + 1], size)


def video_features(path: Path, *, frames_per_video: int = 6, size: int = 96) -> np.ndarray:
    """:func:`trainer.domain_features.clip_features` of one video file."""
    frames = decode_video(path).frames
    return clip_features(*reduce_video(frames, frames_per_video=frames_per_video, size=size))


def manifest_features(
    manifest: Path,
    *,
    limit: int | None = None,
    frames_per_video: int = 6,
    size: int = 96,
    progress: bool = True,
    desc: str = "features",
) -> ClipSet:
    """Features of the first ``limit`` videos of a manifest (any with video and patient_id)."""
    rows = read_video_list(manifest, limit)
    features = [
        video_features(path, frames_per_video=frames_per_video, size=size)
        for path, _ in tqdm(rows, desc=desc, unit="video", disable=not progress)
    ]
    return ClipSet(
        features=np.array(features),
        groups=tuple(group for _, group in rows),
        videos=tuple(str(path.relative_to(manifest.parent)) for path, _ in rows),
    )


def _classifier(name: str, seed: int) -> object:
    if name == "logistic":
        return make_pipeline(StandardScaler(), LogisticRegression(C=1.0, max_iter=5000))
    if name == "boosting":
        return HistGradientBoostingClassifier(
            max_depth=3, max_iter=100, learning_rate=0.1, random_state=seed
        )
    raise ValueError(f"unknown classifier {name!r}; choose from {CLASSIFIERS}")


def out_of_fold_scores(
    x: np.ndarray, y: np.ndarray, groups: np.ndarray, *, classifier: str, folds: int, seed: int
) -> np.ndarray:
    """P(synthetic) for every clip from a model that never saw its group."""
    scores = np.full(len(y), np.nan)
    splitter = StratifiedGroupKFold(n_splits=folds, shuffle=True, random_state=seed)
    # A few hundred rows: threads only fight over the cores (boosting ran 10x slower with
    # OpenMP on a loaded 2-core machine), so fit single-threaded.
    with threadpool_limits(limits=1):
        for train, test in splitter.split(x, y, groups):
            model = _classifier(classifier, seed)
            model.fit(x[train], y[train])  # type: ignore[attr-defined]
            scores[test] = model.predict_proba(x[test])[:, 1]  # type: ignore[attr-defined]
    return scores


def feature_gaps(real: np.ndarray, synthetic: np.ndarray) -> tuple[FeatureGap, ...]:
    """Every feature alone as the score, most separating first."""
    x = np.vstack([real, synthetic])
    is_synthetic = np.r_[np.zeros(len(real), bool), np.ones(len(synthetic), bool)]
    gaps = [
        FeatureGap(
            name=name,
            auc=binary_auc(is_synthetic, x[:, j]),
            real_median=float(np.median(real[:, j])),
            synthetic_median=float(np.median(synthetic[:, j])),
        )
        for j, name in enumerate(FEATURE_NAMES)
    ]
    return tuple(sorted(gaps, key=lambda g: -g.separation))


def domain_gap(
    real: ClipSet,
    synthetic: ClipSet,
    *,
    folds: int = 5,
    seed: int = 0,
    bootstrap: int = 1000,
    classifiers: Sequence[str] = CLASSIFIERS,
) -> DomainGap:
    """Train the domain classifiers with grouped cross-validation and score them.

    Args:
        real: Features of the real clips (label 0).
        synthetic: Features of the generated clips (label 1).
        folds: Grouped folds; fewer when a domain has fewer groups.
        seed: Seeds the folds, the trees and the bootstrap.
        bootstrap: Group resamples for the intervals (0: points only).
        classifiers: Which of :data:`CLASSIFIERS` to run.

    Raises:
        ValueError: a domain with fewer than 2 groups (no grouped fold could test it).
    """
    n_groups = [len(set(real.groups)), len(set(synthetic.groups))]
    if min(n_groups) < 2:
        raise ValueError(f"each domain needs >= 2 groups for grouped folds, got {n_groups}")
    folds = min(folds, *n_groups)
    x = np.nan_to_num(np.vstack([real.features, synthetic.features]))
    y = np.r_[np.zeros(len(real.features), int), np.ones(len(synthetic.features), int)]
    # Prefixes keep a real "P00001" and a generated "P00001" apart.
    groups = np.array([f"real:{g}" for g in real.groups] + [f"syn:{g}" for g in synthetic.groups])
    resamples = PatientBootstrap(groups, n=bootstrap, seed=seed)
    auc = {}
    for name in classifiers:
        score = out_of_fold_scores(x, y, groups, classifier=name, folds=folds, seed=seed)
        proba = np.column_stack([1 - score, score])
        auc[name] = resamples.metric_interval("auc", y, proba)
    return DomainGap(
        auc=auc,
        features=feature_gaps(real.features, synthetic.features),
        n_real=len(real.features),
        n_synthetic=len(synthetic.features),
        real_groups=n_groups[0],
        synthetic_groups=n_groups[1],
        folds=folds,
    )


def headline(gap: DomainGap) -> Interval:
    """The figure to quote: the logistic AUC (else the first classifier run)."""
    if "logistic" in gap.auc:
        return gap.auc["logistic"]
    return next(iter(gap.auc.values()), Interval(math.nan, math.nan, math.nan, 0))
