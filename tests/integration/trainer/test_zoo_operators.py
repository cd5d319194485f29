"""Every expert family the trainer fits converts to an ONNX model the expert tier accepts:
the operator allow-list (``artifact_safety.ZOO_OPERATORS``) is derived from these models, and
this test keeps it in step with skl2onnx and scikit-learn as they change (issue 16)."""

from __future__ import annotations

import numpy as np
import pytest

from expert_service.artifact_safety import ArtifactPolicy, check_onnx_artifact
from expert_service.probe import ProbeLimits, probe_model
from expert_service.training.catalog import EXTRA_FAMILIES, ZOO_FAMILIES
from trainer.experts import fit_expert

N_FEATURES = 38


@pytest.mark.parametrize("n_classes", [2, 3])
@pytest.mark.parametrize("family", [*ZOO_FAMILIES, *EXTRA_FAMILIES])
def test_every_family_passes_the_operator_checks_and_the_probe(family: str, n_classes: int) -> None:
    rng = np.random.default_rng(0)
    x = rng.random((60, N_FEATURES)).astype(np.float32)
    labels = [f"class-{i % n_classes}" for i in range(60)]
    x[:, 0] += np.asarray([i % n_classes for i in range(60)], np.float32)  # learnable
    x = np.clip(x / x.max(), 0.0, 1.0)
    patients = [f"patient-{i // 2}" for i in range(60)]
    fitted = fit_expert(x, labels, family=family, seed=0, patient_ids=patients)
    check_onnx_artifact(fitted.onnx_bytes, ArtifactPolicy())  # raises when refused
    probe_model(fitted.onnx_bytes, N_FEATURES, ProbeLimits())
