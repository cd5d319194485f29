"""The training loop shared by the biomarker model and the end-to-end baselines.

AdamW (weight decay) with dropout before the head; a cosine learning-rate schedule whose last
epoch is kept (default), or the paper's ReduceLROnPlateau (factor 0.5) on the validation metric
with the best validation epoch kept; per-clip augmentations; oversampling of rare labels drawn
from the training rows only; a checkpoint after every epoch from which an interrupted run resumes.

Why cosine by default: on small clinical sets a fold's validation patients may hold two
positives of a finding, and an epoch choice or learning-rate cut driven by that AUC is noise.
A fixed schedule whose last epoch is kept does not look at validation at all (validation AUC is
still recorded in the history).
"""

from __future__ import annotations

import copy
import hashlib
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
from torch.utils.hooks import RemovableHandle
from tqdm import tqdm

from biomarker_service.model import TSMResNet
from lus.video import DecodedVideo, make_clips
from trainer.augment import ClipAugment, augment_clips
from trainer.checkpoint import RunState, resume_checkpoint, save_checkpoint
from trainer.metrics import macro_auc
from trainer.oversample import oversample_classes, oversample_multilabel

logger = logging.getLogger(__name__)

Schedule = Literal["cosine", "plateau"]
"""``cosine``: the rate anneals from ``lr`` to 1% of it over the epochs; the last epoch is kept.
``plateau``: the paper's ReduceLROnPlateau on validation AUC; the best validation epoch is kept."""

Objective = Literal["multilabel", "multiclass"]
"""``multilabel``: float targets ``(n, k)``, NaN = unknown, masked BCE. ``multiclass``: int
class indices ``(n,)``, cross-entropy."""


@dataclass
class FitConfig:
    """How to train.

    Attributes:
        epochs: Passes over the (oversampled) training rows.
        batch_size: Clips per step.
        lr: AdamW learning rate (paper: Adam at 1e-4).
        seed: Seeds batches, clip sampling, augmentations and oversampling.
        augment: Per-clip augmentation ranges.
        oversample: Draw each epoch's rows from a pool where rare labels are repeated.
        schedule: ``cosine`` (last epoch kept) or ``plateau`` (best validation epoch kept).
        patience: ``plateau`` only: epochs without improvement before the rate halves.
        dropout: Dropout probability on the pooled features before the head (training only;
            0 switches it off). Guards against memorising a few patient groups.
        weight_decay: AdamW's decoupled weight decay (0 = plain Adam).
        checkpoint: File written after every epoch; an existing one is resumed.
        progress: Show a progress bar.
        desc: Label of the progress bar and of log lines.
        bf16: Forward passes under bf16 autocast on CUDA (weights and optimiser stay fp32);
            ignored elsewhere, since CPU bf16 is rarely faster and changes the figures.
    """

    epochs: int = 30
    batch_size: int = 8
    lr: float = 1e-4
    seed: int = 0
    augment: ClipAugment = field(default_factory=ClipAugment)
    oversample: bool = True
    schedule: Schedule = "cosine"
    patience: int = 2
    dropout: float = 0.5
    weight_decay: float = 1e-4
    checkpoint: Path | None = None
    progress: bool = True
    desc: str = "train"
    bf16: bool = False


@dataclass
class FitResult:
    """What a run produced (the model passed in now holds the kept epoch's weights).

    ``kept_epoch`` is 1-based: the last epoch for ``cosine``, the best validation one for
    ``plateau``; ``best_score`` is the kept epoch's score (validation AUC, else -train loss).
    """

    history: list[dict[str, float]]
    best_score: float
    seconds: float
    kept_epoch: int = 0

    def protocol(self, cfg: FitConfig) -> dict[str, float]:
        """The regularisation and schedule of the run, as numbers for an artifact's provenance."""
        return {
            "dropout": cfg.dropout,
            "weight_decay": cfg.weight_decay,
            "schedule_cosine": float(cfg.schedule == "cosine"),
            "kept_epoch": float(self.kept_epoch),
        }


def masked_bce(
    logits: torch.Tensor, labels: torch.Tensor, weights: torch.Tensor | None = None
) -> torch.Tensor:
    """BCE averaged over known labels only (NaN = unknown), each cell weighted by ``weights``.

    With weights, the loss is ``sum(w * bce) / sum(w)`` over known cells, so a down-weighted
    "not marked" zero counts for less than a marked label (``trainer.label_treatment``).
    """
    known = ~torch.isnan(labels)
    if weights is not None:
        known &= weights > 0
    if not known.any():
        return logits.sum() * 0.0
    if weights is None:
        return F.binary_cross_entropy_with_logits(logits[known], labels[known])
    cells = F.binary_cross_entropy_with_logits(logits[known], labels[known], reduction="none")
    w = weights[known]
    return (cells * w).sum() / w.sum()


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
def predict_clips(
    model: TSMResNet, videos: list[DecodedVideo], device: torch.device, batch_videos: int = 8
) -> np.ndarray:
    """Sigmoid outputs per inference clip ``(n_videos, clips, n_outputs)`` (not averaged).

    Their mean over clips is exactly ``predict_videos``; the paper fits and scores experts on
    these per-clip vectors and averages the experts' answers.
    """
    return _per_video(
        model, videos, device, batch_videos, lambda c: torch.sigmoid(model(c)), reduce=False
    )


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
    *,
    reduce: bool = True,
) -> np.ndarray:
    model.eval()
    out = []
    for start in range(0, len(videos), batch_videos):
        chunk = videos[start : start + batch_videos]
        clips = np.concatenate([make_clips(v, model.spec) for v in chunk])
        values = head(torch.from_numpy(clips).to(device)).float().cpu().numpy()
        per_clip = values.reshape(len(chunk), model.spec.clips, -1)
        out.append(per_clip.mean(axis=1) if reduce else per_clip)
    if not out:
        return np.zeros((0, 0) if reduce else (0, model.spec.clips, 0), np.float32)
    return np.concatenate(out)


def _loss(
    objective: Objective,
    logits: torch.Tensor,
    targets: torch.Tensor,
    weights: torch.Tensor | None,
) -> torch.Tensor:
    if objective == "multilabel":
        return masked_bce(logits, targets, weights)
    return F.cross_entropy(logits, targets)


def dropout_before_head(model: TSMResNet, p: float) -> RemovableHandle | None:
    """Dropout on the head's input while the model trains; nothing in eval mode.

    A forward pre-hook rather than a new layer, so the weights' names (and so every saved
    artifact and its ONNX export) stay those of the plain model.
    """
    if p <= 0:
        return None

    def drop(module: torch.nn.Module, args: tuple[torch.Tensor, ...]) -> tuple[torch.Tensor]:
        return (F.dropout(args[0], p=p, training=module.training),)

    return model.fc.register_forward_pre_hook(drop)


def _scheduler(
    optimizer: torch.optim.Optimizer, cfg: FitConfig
) -> torch.optim.lr_scheduler.LRScheduler:
    if cfg.schedule == "cosine":
        return torch.optim.lr_scheduler.CosineAnnealingLR(
            optimizer, T_max=max(1, cfg.epochs), eta_min=cfg.lr * 0.01
        )
    return torch.optim.lr_scheduler.ReduceLROnPlateau(
        optimizer, mode="max", factor=0.5, patience=cfg.patience
    )


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
    label_weights: np.ndarray | None = None,
) -> FitResult:
    """Train ``model`` in place; it ends with the weights of the kept epoch (see ``Schedule``).

    Args:
        model: Already on ``device``.
        device: Where to compute.
        train: Training videos and their targets (see ``Objective``).
        val: Validation videos and targets; recorded every epoch. With ``plateau`` they pick the
            epoch (without them the lowest training loss wins).
        objective: ``multilabel`` or ``multiclass``.
        cfg: The run's settings.
        label_weights: ``multilabel`` only: a weight per target cell (``trainer.label_treatment``);
            None weighs every known cell 1.
    """
    started = time.perf_counter()
    torch.manual_seed(cfg.seed)
    rng = np.random.default_rng(cfg.seed)
    videos, targets = train
    optimizer = torch.optim.AdamW(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    scheduler = _scheduler(optimizer, cfg)
    state = RunState(copy.deepcopy(model.state_dict()), -math.inf, [], 0, 0.0)
    # Plateau runs leave epochs out so a finished run can be extended by asking for more;
    # a cosine schedule depends on the epoch count, so it is part of the run's identity.
    horizon = f"|{cfg.epochs}" if cfg.schedule == "cosine" else ""
    fingerprint = (
        f"{cfg.desc}|{objective}|{len(videos)}|{cfg.seed}|{cfg.schedule}{horizon}"
        f"|p{cfg.dropout:g}|wd{cfg.weight_decay:g}|w{_weights_digest(label_weights)}"
    )
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
    hook = dropout_before_head(model, cfg.dropout)
    autocast = cfg.bf16 and device.type == "cuda"
    try:
        for epoch in bar:
            model.train()
            losses = []
            lr = float(optimizer.param_groups[0]["lr"])
            order = _epoch_order(objective, targets, cfg.oversample, rng)
            for start in range(0, len(order), cfg.batch_size):
                idx = order[start : start + cfg.batch_size]
                clips = np.stack([make_clips(videos[i], spec, rng=rng)[0] for i in idx])
                x = augment_clips(torch.from_numpy(clips).to(device), cfg.augment, rng)
                weights = None
                if label_weights is not None:
                    weights = torch.from_numpy(label_weights[idx]).to(device)
                y = torch.from_numpy(targets[idx]).to(device)
                with torch.autocast("cuda", dtype=torch.bfloat16, enabled=autocast):
                    logits = model(x)
                loss = _loss(objective, logits.float(), y, weights)
                optimizer.zero_grad(set_to_none=True)
                loss.backward()  # type: ignore[no-untyped-call]
                optimizer.step()
                losses.append(loss.item())
            record = {"epoch": float(epoch + 1), "train_loss": float(np.mean(losses)), "lr": lr}
            if val is not None and len(val[0]):
                record["val_auc"] = _val_score(model, objective, val[0], val[1], device)
            score = record.get("val_auc", math.nan)
            score = -record["train_loss"] if math.isnan(score) else score
            if isinstance(scheduler, torch.optim.lr_scheduler.ReduceLROnPlateau):
                scheduler.step(score)
                keep = score > state.best_score
            else:
                scheduler.step()
                keep = True  # the last epoch, whatever validation says
            if keep:
                state.best_score, state.best_state = score, copy.deepcopy(model.state_dict())
                record["kept"] = 1.0
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
    finally:
        if hook is not None:
            hook.remove()
    model.load_state_dict(state.best_state)
    state.seconds += time.perf_counter() - started
    kept = [int(h["epoch"]) for h in state.history if h.get("kept")]
    return FitResult(
        history=state.history,
        best_score=state.best_score,
        seconds=state.seconds,
        kept_epoch=kept[-1] if kept else 0,
    )


def _weights_digest(weights: np.ndarray | None) -> str:
    if weights is None:
        return "-"
    return hashlib.sha256(np.ascontiguousarray(weights, dtype=np.float32).tobytes()).hexdigest()[:8]
