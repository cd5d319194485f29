"""The training loop shared by the biomarker model and the end-to-end baselines.

Adam; ReduceLROnPlateau (factor 0.5) on the validation metric; the best epoch by validation is
kept; per-clip augmentations; oversampling of rare labels drawn from the training rows only;
a checkpoint after every epoch from which an interrupted run resumes.
"""

from __future__ import annotations

import copy
import logging
import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import numpy as np
import torch
import torch.nn.functional as F
from tqdm import tqdm

from biomarker_service.model import TSMResNet
from lus.video import DecodedVideo, make_clips
from trainer.augment import ClipAugment, augment_clips
from trainer.checkpoint import RunState, resume_checkpoint, save_checkpoint
from trainer.metrics import macro_auc
from trainer.oversample import oversample_classes, oversample_multilabel

logger = logging.getLogger(__name__)

Objective = Literal["multilabel", "multiclass"]
"""``multilabel``: float targets ``(n, k)``, NaN = unknown, masked BCE. ``multiclass``: int
class indices ``(n,)``, cross-entropy."""


@dataclass
class FitConfig:
    """How to train.

    Attributes:
        epochs: Passes over the (oversampled) training rows.
        batch_size: Clips per step.
        lr: Adam learning rate (paper: 1e-4).
        seed: Seeds batches, clip sampling, augmentations and oversampling.
        augment: Per-clip augmentation ranges.
        oversample: Draw each epoch's rows from a pool where rare labels are repeated.
        patience: Epochs without improvement before the learning rate halves.
        checkpoint: File written after every epoch; an existing one is resumed.
        progress: Show a progress bar.
        desc: Label of the progress bar and of log lines.
    """

    epochs: int = 30
    batch_size: int = 8
    lr: float = 1e-4
    seed: int = 0
    augment: ClipAugment = field(default_factory=ClipAugment)
    oversample: bool = True
    patience: int = 2
    checkpoint: Path | None = None
    progress: bool = True
    desc: str = "train"


@dataclass
class FitResult:
    """What a run produced (the model passed in now holds the best epoch's weights)."""

    history: list[dict[str, float]]
    best_score: float
    seconds: float


def masked_bce(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """BCE averaged over known labels only (NaN = unknown)."""
    known = ~torch.isnan(labels)
    if not known.any():
        return logits.sum() * 0.0
    return F.binary_cross_entropy_with_logits(logits[known], labels[known])


@torch.inference_mode()
def predict_videos(
    model: TSMResNet,
    videos: list[DecodedVideo],
    device: torch.device,
    *,
    objective: Objective = "multilabel",
    batch_videos: int = 8,
) -> np.ndarray:
    """Multi-clip-averaged probabilities ``(n_videos, n_outputs)`` (sigmoid or softmax)."""
    activation: Callable[[torch.Tensor], torch.Tensor] = (
        torch.sigmoid if objective == "multilabel" else (lambda t: torch.softmax(t, dim=1))
    )
    return _per_video(model, videos, device, batch_videos, lambda c: activation(model(c)))


@torch.inference_mode()
def video_features(
    model: TSMResNet, videos: list[DecodedVideo], device: torch.device, batch_videos: int = 8
) -> np.ndarray:
    """Penultimate-layer features ``(n_videos, feature_dim)``, averaged over clips."""
    return _per_video(model, videos, device, batch_videos, model.features)


def _per_video(
    model: TSMResNet,
    videos: list[DecodedVideo],
    device: torch.device,
    batch_videos: int,
    head: Callable[[torch.Tensor], torch.Tensor],
) -> np.ndarray:
    model.eval()
    out = []
    for start in range(0, len(videos), batch_videos):
        chunk = videos[start : start + batch_videos]
        clips = np.concatenate([make_clips(v, model.spec) for v in chunk])
        values = head(torch.from_numpy(clips).to(device)).float().cpu().numpy()
        out.append(values.reshape(len(chunk), model.spec.clips, -1).mean(axis=1))
    return np.concatenate(out) if out else np.zeros((0, 0), np.float32)


def _loss(objective: Objective, logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    if objective == "multilabel":
        return masked_bce(logits, targets)
    return F.cross_entropy(logits, targets)


def _val_score(
    model: TSMResNet,
    objective: Objective,
    videos: list[DecodedVideo],
    targets: np.ndarray,
    device: torch.device,
) -> float:
    probs = predict_videos(model, videos, device, objective=objective)
    if objective == "multiclass":
        # One-vs-rest AUC per class present, averaged: a small validation set may lack a class.
        targets = np.eye(probs.shape[1], dtype=np.float32)[targets]
    return macro_auc(targets, probs)


def _epoch_order(
    objective: Objective, targets: np.ndarray, oversample: bool, rng: np.random.Generator
) -> np.ndarray:
    """One epoch's row order: as many rows as there are training rows.

    With oversampling they are drawn from a pool where rare labels are repeated, so rare rows
    come up more often while an epoch costs the same as without oversampling.
    """
    if not oversample:
        return rng.permutation(len(targets))
    pool = (
        oversample_multilabel(targets, rng)
        if objective == "multilabel"
        else oversample_classes(targets, rng)
    )
    return rng.choice(pool, size=len(targets), replace=False)


def fit_tsm(
    model: TSMResNet,
    device: torch.device,
    train: tuple[list[DecodedVideo], np.ndarray],
    val: tuple[list[DecodedVideo], np.ndarray] | None,
    *,
    objective: Objective,
    cfg: FitConfig,
) -> FitResult:
    """Train ``model`` in place; it ends with the weights of the best validation epoch.

    Args:
        model: Already on ``device``.
        device: Where to compute.
        train: Training videos and their targets (see ``Objective``).
        val: Validation videos and targets; without them the lowest training loss wins.
        objective: ``multilabel`` or ``multiclass``.
        cfg: The run's settings.
    """
    started = time.perf_counter()
    torch.manual_seed(cfg.seed)
    rng = np.random.default_rng(cfg.seed)
    videos, targets = train
    optimizer = torch.optim.Adam(model.parameters(), lr=cfg.lr)
    scheduler = torch.optim.lr_scheduler.ReduceLROnPlateau(
        optimizer, mode="max", factor=0.5, patience=cfg.patience
    )
    state = RunState(copy.deepcopy(model.state_dict()), -math.inf, [], 0, 0.0)
    # Epochs are left out so a finished run can be extended by asking for more epochs.
    fingerprint = f"{cfg.desc}|{objective}|{len(videos)}|{cfg.seed}"
    if cfg.checkpoint is not None and cfg.checkpoint.exists():
        state = resume_checkpoint(
            cfg.checkpoint,
            fingerprint=fingerprint,
            model=model,
            optimizer=optimizer,
            scheduler=scheduler,
            rng=rng,
        )
        logger.info("%s: resumed from %s at epoch %d", cfg.desc, cfg.checkpoint, state.epoch)
    spec = model.spec
    bar = tqdm(
        range(state.epoch, cfg.epochs), desc=cfg.desc, unit="epoch", disable=not cfg.progress
    )
    for epoch in bar:
        model.train()
        losses = []
        order = _epoch_order(objective, targets, cfg.oversample, rng)
        for start in range(0, len(order), cfg.batch_size):
            idx = order[start : start + cfg.batch_size]
            clips = np.stack([make_clips(videos[i], spec, rng=rng)[0] for i in idx])
            x = augment_clips(torch.from_numpy(clips).to(device), cfg.augment, rng)
            loss = _loss(objective, model(x), torch.from_numpy(targets[idx]).to(device))
            optimizer.zero_grad(set_to_none=True)
            loss.backward()  # type: ignore[no-untyped-call]
            optimizer.step()
            losses.append(loss.item())
        record = {"epoch": float(epoch + 1), "train_loss": float(np.mean(losses))}
        if val is not None and len(val[0]):
            record["val_auc"] = _val_score(model, objective, val[0], val[1], device)
        score = record.get("val_auc", math.nan)
        score = -record["train_loss"] if math.isnan(score) else score
        scheduler.step(score)
        if score > state.best_score:
            state.best_score, state.best_state = score, copy.deepcopy(model.state_dict())
        state.history.append(record)
        state.epoch = epoch + 1
        state.seconds = state.seconds + (time.perf_counter() - started)
        started = time.perf_counter()
        bar.set_postfix({k: round(v, 3) for k, v in record.items() if k != "epoch"})
        if cfg.checkpoint is not None:
            save_checkpoint(
                cfg.checkpoint,
                fingerprint=fingerprint,
                state=state,
                model=model,
                optimizer=optimizer,
                scheduler=scheduler,
                rng=rng,
            )
    model.load_state_dict(state.best_state)
    state.seconds += time.perf_counter() - started
    return FitResult(history=state.history, best_score=state.best_score, seconds=state.seconds)
