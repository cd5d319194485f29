"""TorchServe handler of the peer benchmark: MP4 bytes in, the 38 averaged probabilities out.

Packed into a ``.mar`` by ``benchmarks/biomarker_torchserve_peer.py``; it runs inside a
TorchServe worker of the peer venv, with the repository on ``PYTHONPATH``. Decoding, clip
sampling and the model are our own code (``lus.video``, the safetensors artifact), so only the
serving stack differs from ``biomarker_service``: TorchServe's Java frontend and batching, and a
worker that decodes and runs the model in one thread (our service decodes in a pool that
overlaps with the model thread).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import torch

from biomarker_service.artifact import load_artifact
from lus.video import decode_video, make_clips


class TSMVideoHandler:
    """TorchServe entry point: ``initialize(context)`` once, then ``handle(batch, context)``."""

    def __init__(self) -> None:
        self.model: torch.nn.Module | None = None
        self.spec: Any = None

    def initialize(self, context: Any) -> None:
        """Load the artifact on CPU; ``handler.torch_threads`` in model-config.yaml sets threads."""
        threads = context.model_yaml_config.get("handler", {}).get("torch_threads")
        if threads:
            torch.set_num_threads(int(threads))
        model_dir = Path(context.system_properties["model_dir"])
        self.model, info = load_artifact(model_dir / context.manifest["model"]["serializedFile"])
        self.spec = info.spec

    def handle(self, batch: list[dict[str, Any]], context: Any) -> list[list[float]]:
        """One forward pass over every clip of every video in the batch, like our batcher."""
        assert self.model is not None, "initialize() runs before handle()"
        clips = [
            make_clips(decode_video(bytes(row.get("data") or row.get("body") or b"")), self.spec)
            for row in batch
        ]
        with torch.inference_mode():
            probabilities = torch.sigmoid(self.model(torch.from_numpy(np.concatenate(clips))))
        per_video = probabilities.reshape(len(batch), self.spec.clips, -1).mean(dim=1)
        vectors: list[list[float]] = per_video.tolist()
        return vectors
