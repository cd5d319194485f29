"""The expert zoo: learns on synthetic vectors, validates on unseen patients, is reproducible."""

from __future__ import annotations

import numpy as np
import pytest

from expert_service.training.catalog import ZOO_FAMILIES
from lus.errors import InvalidInput
from trainer.metrics import classification_metrics
from trainer.zoo import fit_zoo, make_estimator, probabilities


def _vectors(n_patients: int, per_patient: int = 3, seed: int = 0):  # type: ignore[no-untyped-def]
    """Label = which third a patient's score falls in; the score depends on 2 of 38 features."""
    rng = np.random.default_rng(seed)
    base = rng.random((n_patients, 38))
    x = np.repeat(base, per_patient, axis=0) + rng.normal(0, 0.03, (n_patients * per_patient, 38))
    score = (base[:, 0] + base[:, 4]) / 2
    y = np.repeat(np.array(["a", "b", "c"])[np.digitize(score, [0.33, 0.67])], per_patient)
    groups = np.repeat([f"p{i}" for i in range(n_patients)], per_patient)
    return x.astype(np.float32), y, groups


def test_zoo_learns_and_generalises_to_new_patients() -> None:
    x, y, g = _vectors(100)
    xt, yt, _ = _vectors(30, seed=1)
    result = fit_zoo(x, y, g, families=("decision_tree", "random_forest", "svm"), seeds=(0, 1))
    labels = ["a", "b", "c"]
    held_out = classification_metrics(yt, probabilities(result.estimator, xt, labels), labels)
    assert result.best.val_auc > 0.8
    assert held_out["roc_auc_ovo_weighted"] > 0.8, held_out


def test_validation_patients_are_never_fitted_and_never_oversampled() -> None:
    x, y, g = _vectors(40)
    y[:9] = "rare"  # 3 patients
    result = fit_zoo(x, y, g, families=("decision_tree",), seeds=(0,))
    assert not set(g[result.fit_rows]) & set(g[result.val_rows])
    assert len(set(result.val_rows.tolist())) == len(result.val_rows)  # no repeats
    assert len(result.fit_rows) > len(set(result.fit_rows.tolist()))  # fitting side repeated
    fit_counts = {c: int(np.sum(y[result.fit_rows] == c)) for c in set(y[result.fit_rows])}
    assert len(set(fit_counts.values())) == 1  # classes balanced on the fitting side


def test_all_seven_families_three_seeds_and_reproducible() -> None:
    x, y, g = _vectors(24)
    first = fit_zoo(x, y, g)
    families = {c.family for c in first.candidates}
    assert families == set(ZOO_FAMILIES)
    assert len(first.candidates) == 6 * 3 + 1  # k-NN has no seed: fitted once
    again = fit_zoo(x, y, g)
    assert [(c.family, c.seed, c.val_auc) for c in first.candidates] == [
        (c.family, c.seed, c.val_auc) for c in again.candidates
    ]
    np.testing.assert_array_equal(
        first.estimator.predict_proba(x), again.estimator.predict_proba(x)
    )


def test_unknown_family_is_named() -> None:
    with pytest.raises(InvalidInput, match="unknown expert family 'forest'; choose one of"):
        make_estimator("forest", 0)


def test_every_family_keeps_its_best_seed_for_the_report() -> None:
    x, y, g = _vectors(60)
    families = ("decision_tree", "random_forest", "knn")
    result = fit_zoo(x, y, g, families=families, seeds=(0, 1))
    assert set(result.by_family) == set(families)
    for family, (estimator, candidate) in result.by_family.items():
        tried = [c for c in result.candidates if c.family == family]
        assert candidate.val_auc == max(c.val_auc for c in tried)
        assert probabilities(estimator, x[:3], ["a", "b", "c"]).shape == (3, 3)
    assert result.by_family[result.family][1] == result.best
