"""Patient-level folds: a patient's clips are always on one side of every split."""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from sklearn.model_selection import GroupKFold, StratifiedGroupKFold

from lus.errors import InvalidInput


@dataclass(frozen=True)
class Fold:
    """Row indices of one cross-validation run.

    Attributes:
        index: 0-based fold number.
        train: Rows to fit on.
        val: Rows to pick epochs, seeds and families on (patients of neither other side).
        test: Rows scored for this fold's figures.
    """

    index: int
    train: np.ndarray
    val: np.ndarray
    test: np.ndarray


def _splits(
    n_splits: int, groups: np.ndarray, strata: np.ndarray | None, seed: int
) -> list[tuple[np.ndarray, np.ndarray]]:
    x = np.zeros(len(groups))
    if strata is None:
        plain = GroupKFold(n_splits=n_splits, shuffle=True, random_state=seed)
        return list(plain.split(x, None, groups))
    with warnings.catch_warnings():
        # Small clinical sets always have classes with fewer patients than folds.
        warnings.filterwarnings("ignore", message="The least populated class", category=UserWarning)
        splitter = StratifiedGroupKFold(n_splits=n_splits, shuffle=True, random_state=seed)
        try:
            return list(splitter.split(x, strata, groups))
        except ValueError:
            # Every class is smaller than the number of folds: stratifying is impossible.
            return _splits(n_splits, groups, None, seed)


def validation_split(
    rows: np.ndarray,
    groups: Sequence[str] | np.ndarray,
    strata: Sequence[str] | np.ndarray | None,
    *,
    fraction: float,
    seed: int,
) -> tuple[np.ndarray, np.ndarray]:
    """Split ``rows`` (indices) into train and validation by patient, ``fraction`` held out."""
    g = np.asarray(groups)[rows]
    n_patients = len(np.unique(g))
    if n_patients < 2:
        return rows, rows[:0]
    n_splits = min(n_patients, max(2, round(1 / fraction)))
    s = None if strata is None else np.asarray(strata)[rows]
    train, val = _splits(n_splits, g, s, seed)[0]
    return rows[train], rows[val]


def patient_folds(
    groups: Sequence[str] | np.ndarray,
    strata: Sequence[str] | np.ndarray | None = None,
    *,
    k: int = 5,
    val_fraction: float = 0.2,
    seed: int = 0,
) -> list[Fold]:
    """``k`` folds over patients, stratified by ``strata`` when given, each with a validation set.

    Raises:
        InvalidInput: Fewer patients than ``k + 1`` (each fold needs test and validation patients).
    """
    g = np.asarray(groups)
    n_patients = len(np.unique(g))
    if k < 2 or n_patients < k + 1:
        raise InvalidInput(f"{k}-fold evaluation needs at least {k + 1} patients; got {n_patients}")
    folds = []
    s = None if strata is None else np.asarray(strata)
    for i, (rest, test) in enumerate(_splits(k, g, s, seed)):
        train, val = validation_split(rest, g, strata, fraction=val_fraction, seed=seed + i)
        folds.append(Fold(i, np.sort(train), np.sort(val), np.sort(test)))
    return folds
