"""PyTorch backend: CUDA with bf16 autocast and channels_last when a GPU is present, else CPU.

Everything of the GPU tier that needs torch at import time is here (or in ``model``), so the
ONNX backend's server never loads it.
"""

from __future__ import annotations

import numpy as np
import torch

from biomarker_service.model import TSMResNet
from biomarker_service.model_thread import ModelThread


def pick_device(requested: str = "auto") -> torch.device:
    """ "auto" picks CUDA when present, else CPU; anything else is passed to ``torch.device``."""
    if requested == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(requested)


class TorchBackend:
    """Runs a ``TSMResNet`` eagerly; fp32 on CPU, bf16 autocast on CUDA unless disabled."""

    version_suffix = ""  # bf16 stays within the service's stated tolerance of fp32

    def __init__(
        self,
        model: TSMResNet,
        device: torch.device,
        *,
        bf16: bool = True,
        channels_last: bool = True,
    ) -> None:
        """Move the model to ``device`` in eval mode.

        Args:
            model: the model, on CPU as loaded from its artifact.
            device: where to run it.
            bf16: use bf16 autocast on CUDA (ignored on CPU, where bf16 is rarely faster).
            channels_last: NHWC memory layout on CUDA, which tensor-core convolutions prefer.
        """
        self.torch_device = device
        self.device = str(device)
        self._cuda = device.type == "cuda"
        self._bf16 = bf16 and self._cuda
        model = model.to(device).eval()
        if channels_last and self._cuda:
            model = model.to(memory_format=torch.channels_last)  # type: ignore[call-overload]
        self.model = model
        self.precision = "bf16" if self._bf16 else "fp32"
        self.name = f"torch-{device.type}-{self.precision}"

    @torch.inference_mode()
    def predict(self, clips: np.ndarray) -> np.ndarray:
        """Probabilities ``(N, outputs)`` float32 for clips ``(N, T, H, W)`` uint8."""
        batch = torch.from_numpy(np.ascontiguousarray(clips))
        if self._cuda:  # pinned memory lets the copy overlap with the previous batch's kernels
            batch = batch.pin_memory().to(self.torch_device, non_blocking=True)
        with torch.autocast("cuda", dtype=torch.bfloat16, enabled=self._bf16):
            logits = self.model(batch)
        result: np.ndarray = torch.sigmoid(logits.float()).cpu().numpy()
        return result

    def close(self) -> None:
        """Free cached GPU memory; the model itself goes with this object."""
        if self._cuda:
            torch.cuda.empty_cache()


class TorchModelThread(ModelThread):
    """A model thread over ``TorchBackend``: what the trainer and the walking skeleton build."""

    def __init__(self, model: TSMResNet, device: torch.device, *, bf16: bool = True) -> None:
        super().__init__(TorchBackend(model, device, bf16=bf16))
        self.model = model
