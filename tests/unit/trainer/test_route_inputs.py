"""How the biomarker route's vectors reach the zoo: per-model standardisation, and the
sources of each zoo method (the transfer baseline and the own-model route are fit alike)."""

from __future__ import annotations

import numpy as np

from trainer.eval_methods import METHODS, ROUTE_VARIANTS, SOURCES, ZOO_METHODS
from trainer.eval_runner import standardiser, zscore


def _sigmoid(z: np.ndarray) -> np.ndarray:
    out: np.ndarray = 1 / (1 + np.exp(-z))
    return out


def test_standardising_per_model_removes_a_calibration_offset() -> None:
    rng = np.random.default_rng(0)
    latent = rng.normal(size=(200, 1, 3))
    # Two fold models rank the same videos alike but one is shifted and sharper.
    model_a, model_b = _sigmoid(latent), _sigmoid(2.0 * latent + 1.5)
    assert np.abs(model_a - model_b).mean() > 0.1
    za, zb = standardiser(model_a[:100])(model_a), standardiser(model_b[:100])(model_b)
    np.testing.assert_allclose(za, zb, atol=1e-4)


def test_a_constant_output_stays_finite() -> None:
    flat = np.full((10, 1, 2), 0.3)
    z = standardiser(flat)(flat)
    assert np.all(np.isfinite(z)) and np.allclose(z, 0)


def test_every_route_variant_is_a_zoo_method_with_a_stated_source() -> None:
    for name in ROUTE_VARIANTS:
        assert name in METHODS and name in ZOO_METHODS and SOURCES[name]
    # Issue 15 (e): the transfer baseline's features are the fold model's own in-sample
    # outputs; the biomarker route has a variant fit exactly the same way.
    assert SOURCES["transfer_features"] == SOURCES["biomarker_experts_own"]
    assert list(METHODS)[: len(ROUTE_VARIANTS) + 1] == ["biomarker_experts", *ROUTE_VARIANTS]


def test_the_embedding_route_is_fit_as_the_transfer_baseline_on_fitting_row_scales() -> None:
    # Issue 15 item 6: fold models' embeddings share no coordinates, so the embedding route is
    # fit on model k's own embeddings, exactly as transfer_features is.
    assert SOURCES["embedding_experts"] == SOURCES["transfer_features"]
    rng = np.random.default_rng(1)
    embedding = rng.normal(loc=[0.0, 50.0], scale=[1e-2, 30.0], size=(40, 2))
    fitting = np.arange(30)
    z = zscore(embedding, embedding[fitting])
    np.testing.assert_allclose(z[fitting].mean(axis=0), 0, atol=1e-5)
    np.testing.assert_allclose(z[fitting].std(axis=0), 1, atol=1e-4)
    # The test rows are moved by the fitting rows' statistics, never by their own.
    shifted = embedding.copy()
    shifted[30:] += 100.0
    np.testing.assert_allclose(zscore(shifted, shifted[fitting])[:30], z[:30], atol=1e-5)
