"""Task metrics checked against scikit-learn and hand-computed figures on known inputs."""

from __future__ import annotations

import math

import numpy as np
import pytest
from sklearn.metrics import accuracy_score, f1_score, precision_score, roc_auc_score

from trainer.metrics import classification_metrics, mean_std

LABELS = ["covid", "healthy", "pneumonia"]


def _known() -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(0)
    y = np.array(LABELS)[rng.integers(0, 3, 60)]
    logits = rng.normal(size=(60, 3)) + 1.5 * (y[:, None] == np.array(LABELS)[None, :])
    proba = np.exp(logits) / np.exp(logits).sum(axis=1, keepdims=True)
    return y, proba


def test_matches_sklearn() -> None:
    y, proba = _known()
    pred = np.array(LABELS)[proba.argmax(axis=1)]
    m = classification_metrics(y, proba, LABELS)
    assert m["accuracy"] == pytest.approx(accuracy_score(y, pred))
    assert m["precision_weighted"] == pytest.approx(
        precision_score(y, pred, average="weighted", labels=LABELS, zero_division=0)
    )
    assert m["f1_weighted"] == pytest.approx(f1_score(y, pred, average="weighted", labels=LABELS))
    assert m["roc_auc_ovo_weighted"] == pytest.approx(
        roc_auc_score(y, proba, multi_class="ovo", average="weighted", labels=LABELS)
    )


def test_confusion_sensitivity_specificity_by_hand() -> None:
    y = ["a", "a", "a", "b", "b", "c"]
    pred_cols = [0, 0, 1, 1, 0, 2]
    proba = np.eye(3)[pred_cols] * 0.8 + 0.2 / 3
    m = classification_metrics(y, proba, ["a", "b", "c"])
    assert m["confusion"] == [[2, 1, 0], [1, 1, 0], [0, 0, 1]]
    assert m["sensitivity"] == pytest.approx({"a": 2 / 3, "b": 1 / 2, "c": 1.0})
    # specificity of a: true non-a (b, b, c) not predicted a: b->b, c->c = 2 of 3
    assert m["specificity"] == pytest.approx({"a": 2 / 3, "b": 3 / 4, "c": 1.0})


def test_binary_auc_and_undefined_cases() -> None:
    y = np.array(["0", "1", "1", "0"])
    proba = np.array([[0.9, 0.1], [0.2, 0.8], [0.6, 0.4], [0.7, 0.3]])
    m = classification_metrics(y, proba, ["0", "1"])
    assert m["roc_auc_ovo_weighted"] == pytest.approx(roc_auc_score(y == "1", proba[:, 1]))
    single = classification_metrics(["1", "1"], proba[:2], ["0", "1"])
    assert math.isnan(single["roc_auc_ovo_weighted"])
    assert math.isnan(single["sensitivity"]["0"])  # no true "0": undefined, not 0


def test_a_missing_class_uses_the_explicit_label_list() -> None:
    y, proba = _known()
    keep = y != "pneumonia"
    m = classification_metrics(y[keep], proba[keep], LABELS)
    assert m["roc_auc_ovo_weighted"] == pytest.approx(
        roc_auc_score(y[keep], proba[keep], multi_class="ovo", average="weighted", labels=LABELS)
    )
    assert len(m["confusion"]) == 3


def test_mean_std_skips_undefined_runs() -> None:
    runs = [
        {
            "accuracy": 0.5,
            "precision_weighted": 0.4,
            "f1_weighted": 0.3,
            "roc_auc_ovo_weighted": float("nan"),
        },
        {
            "accuracy": 0.7,
            "precision_weighted": 0.6,
            "f1_weighted": 0.5,
            "roc_auc_ovo_weighted": 0.8,
        },
    ]
    out = mean_std(runs)
    assert out["accuracy"] == pytest.approx((0.6, 0.1))
    assert out["roc_auc_ovo_weighted"] == pytest.approx((0.8, 0.0))


def test_probabilities_off_a_sum_of_one_are_renormalised_not_nan() -> None:
    y, proba = _known()
    scaled = proba * 2.0  # e.g. averaged answers that were not renormalised
    m = classification_metrics(y, scaled, LABELS)
    assert m["roc_auc_ovo_weighted"] == pytest.approx(
        roc_auc_score(y, proba, multi_class="ovo", average="weighted", labels=LABELS)
    )


def test_scores_that_are_not_probabilities_raise() -> None:
    y, proba = _known()
    bad = proba.copy()
    bad[0, 0] = -0.1
    with pytest.raises(ValueError, match="non-negative"):
        classification_metrics(y, bad, LABELS)
    zero = proba.copy()
    zero[1] = 0.0
    with pytest.raises(ValueError, match="sums to 0"):
        classification_metrics(y, zero, LABELS)
