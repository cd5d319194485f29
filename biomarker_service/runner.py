"""Runs the video model on whole clips. The dynamic batcher (later) sits in front of this."""

from __future__ import annotations

import asyncio
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import torch

from biomarker_service.model import TSMResNet


def pick_device(requested: str = "auto") -> torch.device:
    if requested == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(requested)


class TorchRunner:
    """Sigmoid probabilities for clips ``(N, T, H, W)`` uint8, one forward pass at a time."""

    def __init__(self, model: TSMResNet, device: torch.device) -> None:
        self.device = device
        self.model = model.to(device).eval()
        # One thread owns the model: forward passes never interleave and the event loop stays free.
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="model")

    @torch.inference_mode()
    def predict(self, clips: np.ndarray) -> np.ndarray:
        batch = torch.from_numpy(clips).to(self.device, non_blocking=True)
        return torch.sigmoid(self.model(batch)).float().cpu().numpy()

    async def run(self, clips: np.ndarray) -> np.ndarray:
        return await asyncio.get_running_loop().run_in_executor(self._executor, self.predict, clips)

    def close(self) -> None:
        self._executor.shutdown(wait=True)
