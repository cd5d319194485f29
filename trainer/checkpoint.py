"""Per-epoch checkpoints of a training run, so an interrupted run resumes where it stopped.

Loaded with ``weights_only=True``: tensors and plain values only, never pickled code.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from biomarker_service.model import TSMResNet
from lus.errors import InvalidInput


@dataclass
class RunState:
    """Where a run stands: the best weights so far, history, epochs done, seconds spent."""

    best_state: dict[str, torch.Tensor]
    best_score: float
    history: list[dict[str, float]]
    epoch: int
    seconds: float


def save_checkpoint(
    path: Path,
    *,
    fingerprint: str,
    state: RunState,
    model: TSMResNet,
    optimizer: torch.optim.Optimizer,
    scheduler: torch.optim.lr_scheduler.LRScheduler,
    rng: np.random.Generator,
) -> None:
    """Write the run's full state (model, optimizer, scheduler, RNGs) atomically to ``path``."""
    payload = {
        "fingerprint": fingerprint,
        "model": model.state_dict(),
        "optimizer": optimizer.state_dict(),
        "scheduler": scheduler.state_dict(),
        "best_state": state.best_state,
        "best_score": state.best_score,
        "history": json.dumps(state.history),
        "epoch": state.epoch,
        "seconds": state.seconds,
        "numpy_rng": json.dumps(rng.bit_generator.state),
        "torch_rng": torch.get_rng_state(),
    }
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(path.suffix + ".tmp")
    torch.save(payload, tmp)
    tmp.replace(path)  # a crash mid-write leaves the previous checkpoint intact


def resume_checkpoint(
    path: Path,
    *,
    fingerprint: str,
    model: TSMResNet,
    optimizer: torch.optim.Optimizer,
    scheduler: torch.optim.lr_scheduler.LRScheduler,
    rng: np.random.Generator,
) -> RunState:
    """Restore a run saved by ``save_checkpoint`` into the given objects.

    Raises:
        InvalidInput: The checkpoint belongs to another run (its fingerprint differs).
    """
    payload = torch.load(path, map_location="cpu", weights_only=True)  # no pickled code
    if payload["fingerprint"] != fingerprint:
        raise InvalidInput(
            f"checkpoint {path} belongs to another run ({payload['fingerprint']}, this run is "
            f"{fingerprint}); delete it or point --checkpoint elsewhere"
        )
    model.load_state_dict(payload["model"])
    optimizer.load_state_dict(payload["optimizer"])
    scheduler.load_state_dict(payload["scheduler"])
    rng.bit_generator.state = json.loads(payload["numpy_rng"])
    torch.set_rng_state(payload["torch_rng"])
    device = next(model.parameters()).device
    best = {k: v.to(device) for k, v in payload["best_state"].items()}
    return RunState(
        best,
        float(payload["best_score"]),
        json.loads(payload["history"]),
        int(payload["epoch"]),
        float(payload["seconds"]),
    )
