"""What the runner and the batcher need from a model backend, whatever runs it.

A backend maps whole clips ``(N, T, H, W)`` uint8 to sigmoid probabilities ``(N, outputs)``
float32. It is called from one thread at a time (the runner's model thread), so implementations
need no locking of their own.
"""

from __future__ import annotations

from typing import Protocol, runtime_checkable

import numpy as np


@runtime_checkable
class Backend(Protocol):
    """A loaded model that turns clips into biomarker probabilities."""

    name: str
    """Short label for logs, metrics and benchmarks, e.g. "torch-cuda-bf16", "onnx-cpu-int8"."""

    device: str
    """Where the model runs, e.g. "cpu" or "cuda:0"."""

    version_suffix: str
    """Appended to the artifact version for the feature store when results differ beyond
    float tolerance (e.g. "+int8-static"); empty for backends that reproduce fp32 results."""

    precision: str
    """Numeric precision the model runs in, reported with every vector (``ModelRef``):
    "fp32", "bf16", "int8-dynamic" or "int8-static"."""

    def predict(self, clips: np.ndarray) -> np.ndarray:
        """Probabilities ``(N, outputs)`` float32 for clips ``(N, T, H, W)`` uint8."""
        ...

    def close(self) -> None:
        """Release the model (GPU memory, sessions)."""
        ...
