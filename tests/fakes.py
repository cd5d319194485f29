"""Small experts for the multi-process tests: real scikit-learn models exported to ONNX."""

from __future__ import annotations

import numpy as np


def logistic_onnx(seed: int, n_features: int) -> bytes:
    """A "covid"/"healthy" logistic regression on random vectors (label: feature 0 > feature 1);
    each seed gives different weights, so versions are told apart by their answers."""
    from skl2onnx import to_onnx
    from sklearn.linear_model import LogisticRegression

    rng = np.random.default_rng(seed)
    x = rng.random((60, n_features)).astype(np.float32)
    y = np.where(x[:, 0] > x[:, 1], "covid", "healthy")
    model = LogisticRegression(random_state=seed).fit(x, y)
    return bytes(to_onnx(model, x[:1], options={"zipmap": False}).SerializeToString())
