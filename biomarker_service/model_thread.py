"""Runs a model backend on whole clips in one dedicated thread; the batcher sits in front.

Backend-neutral, so it imports no torch: the PyTorch flavour, ``TorchModelThread``, lives
beside ``TorchBackend`` in ``biomarker_service.torch_backend``.
"""

from __future__ import annotations

import asyncio
from concurrent.futures import ThreadPoolExecutor

import numpy as np

from biomarker_service.backend import Backend

__all__ = ["ModelThread"]


class ModelThread:
    """Sigmoid probabilities for clips ``(N, T, H, W)`` uint8, one forward pass at a time."""

    def __init__(self, backend: Backend) -> None:
        self.backend = backend
        self.device = backend.device
        # One thread owns the model: forward passes never interleave and the event loop stays free.
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="model")

    def predict(self, clips: np.ndarray) -> np.ndarray:
        """Run the backend in the calling thread (trainer, CLI, benchmarks)."""
        return self.backend.predict(clips)

    async def run(self, clips: np.ndarray) -> np.ndarray:
        """Run the backend on the model thread without blocking the event loop."""
        return await asyncio.get_running_loop().run_in_executor(self._executor, self.predict, clips)

    def close(self) -> None:
        """Wait for the forward pass in progress, then release the backend.

        Blocks; an event loop calls it through ``asyncio.to_thread``.
        """
        self._executor.shutdown(wait=True)
        self.backend.close()
