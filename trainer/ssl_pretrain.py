"""Self-supervised initialisation: SimCLR on the training patients' own unlabelled clips.

Two views of one video are a positive pair: each is a clip from its own random time window of
the video (so the pair differs in time, not only in pixels), then flipped, rotated, zoomed and
shifted (``trainer.augment``), with its gain, gamma and noise varied. Every other video in the
batch is a negative, except other videos of the same patient (``groups``), which would teach the
model to tell a patient's own clips apart rather than to see what they share. A small projection
head sits on the pooled features during pretraining and is discarded afterwards (Chen et al.,
"A Simple Framework for Contrastive Learning of Visual Representations", ICML 2020); the
backbone then starts the real model with a new head (``trainer.pretrain.start_from``).

No label is read, but the clips are patients' data: callers pass only training patients' videos
(``lus eval`` pretrains once per fold, on that fold's training and validation rows).
"""

from __future__ import annotations

import json
import math
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from safetensors import safe_open
from safetensors.torch import load_file, save_file
from torch import nn
from tqdm import tqdm

from biomarker_service.model import TSMResNet
from lus.video import DecodedVideo, InputSpec, crop_frames, segment_indices
from lus.video.preprocess import resize_frames
from trainer.augment import ClipAugment, augment_clips

SSL_AUGMENT = ClipAugment(
    flip_p=0.5, intensity=(0.6, 1.4), scale=0.3, rotation_deg=20.0, translation=0.1
)
"""Stronger than the supervised ranges: the contrastive task is trivial under mild changes."""


@dataclass(frozen=True)
class SSLPretraining:
    """How the self-supervised initialisation is made.

    The defaults took 2.0-3.8 min per fold of 60 videos at 8 frames x 96 px, width 16, on one
    CPU thread of a loaded 2-core machine (``docs/reports/pocus/init-ssl``, 2026-11-30).

    Attributes:
        epochs: Passes over the videos (each pass draws fresh views).
        batch_size: Videos per step; each gives two views, and the other videos are negatives.
        temperature: NT-Xent softmax temperature (SimCLR: 0.1-0.5 for small batches).
        lr: AdamW learning rate (cosine-annealed to 1% over the run).
        weight_decay: AdamW weight decay.
        projection_dim: Output size of the projection head (discarded after pretraining).
        window: Share of the video each view's frames come from; the two windows start at
            independent random offsets, so views are different moments of the same loop.
        augment: Per-view affine and gain ranges.
        gamma: Each view's gamma is ``exp(u)``, ``u`` uniform in ``[-gamma, gamma]``.
        noise: Up to this standard deviation of Gaussian pixel noise (gray levels, 0-255).
        seed: Seeds the views, the batches and the initial weights.
        freeze: Stages kept fixed while fine-tuning (``trainer.pretrain.STAGES``).
    """

    epochs: int = 20
    batch_size: int = 16
    temperature: float = 0.2
    lr: float = 1e-3
    weight_decay: float = 1e-4
    projection_dim: int = 64
    window: float = 0.5
    augment: ClipAugment = field(default=SSL_AUGMENT)
    gamma: float = 0.3
    noise: float = 8.0
    seed: int = 0
    freeze: tuple[str, ...] = ()

    def provenance(self, videos: int, patients: int) -> dict[str, float]:
        """The source as numbers for an artifact's provenance metrics."""
        return {
            "init_ssl": 1.0,
            "init_ssl_epochs": float(self.epochs),
            "init_ssl_batch_size": float(self.batch_size),
            "init_ssl_temperature": self.temperature,
            "init_ssl_lr": self.lr,
            "init_ssl_window": self.window,
            "init_ssl_seed": float(self.seed),
            "init_ssl_videos": float(videos),
            "init_ssl_patients": float(patients),
            "init_frozen_stages": float(len(self.freeze)),
        }

    def describe(self) -> str:
        frozen = f", {'/'.join(self.freeze)} frozen" if self.freeze else ""
        return (
            f"self-supervised pretraining (SimCLR, 2 views from {self.window:.0%} time windows, "
            f"{self.epochs} epochs, batch {self.batch_size}, temperature {self.temperature:g}, "
            f"seed {self.seed}{frozen}) on the training patients' own videos only"
        )


@dataclass
class SSLResult:
    """A pretrained backbone (its ``fc`` is unused) and how the run went.

    Attributes:
        model: The TSM model, on the device it was trained on, in eval mode.
        losses: Mean NT-Xent loss of each epoch.
        seconds: Wall time of the run.
        videos: Videos it was trained on.
    """

    model: TSMResNet
    losses: list[float]
    seconds: float
    videos: int


def nt_xent(
    z1: torch.Tensor, z2: torch.Tensor, temperature: float, groups: torch.Tensor | None = None
) -> torch.Tensor:
    """SimCLR's loss: row ``i`` of ``z1`` must pick row ``i`` of ``z2`` among all other views.

    Args:
        z1: ``(n, d)`` projections of the first views.
        z2: ``(n, d)`` projections of the second views of the same videos.
        temperature: Softmax temperature on cosine similarities.
        groups: Optional ``(n,)`` group ids (patients): views of another video of the same
            group are not counted as negatives.
    """
    n = z1.shape[0]
    z = F.normalize(torch.cat([z1, z2]), dim=1)
    similarity = z @ z.T / temperature
    rows = torch.arange(2 * n, device=z.device)
    positive = (rows + n) % (2 * n)
    excluded = torch.eye(2 * n, dtype=torch.bool, device=z.device)
    if groups is not None:
        both = torch.cat([groups, groups]).to(z.device)
        excluded |= both[:, None] == both[None, :]
        excluded[rows, positive] = False
    similarity = similarity.masked_fill(excluded, -math.inf)
    return F.cross_entropy(similarity, positive)


def view_indices(
    num_frames: int, frames: int, window: float, rng: np.random.Generator
) -> np.ndarray:
    """``frames`` indices, one random frame per segment of a random window of the video."""
    length = min(num_frames, max(frames, round(window * num_frames)))
    start = int(rng.integers(0, num_frames - length + 1))
    return start + segment_indices(length, frames, rng=rng)


def two_views(
    video: DecodedVideo, spec: InputSpec, window: float, rng: np.random.Generator
) -> np.ndarray:
    """``(2, frames, size, size)`` uint8: two clips from independent time windows."""
    video = crop_frames(video, spec.crop)
    indices = np.stack(
        [view_indices(video.num_frames, spec.frames_per_clip, window, rng) for _ in range(2)]
    )
    unique, inverse = np.unique(indices, return_inverse=True)  # resize each frame once
    resized = resize_frames(video.frames[unique], spec.size)
    views: np.ndarray = resized[inverse.reshape(indices.shape)]
    return views


def photometric(
    x: torch.Tensor, gamma: float, noise: float, rng: np.random.Generator
) -> torch.Tensor:
    """Per-clip gamma and Gaussian noise on float clips ``(B, T, H, W)`` in [0, 255]."""
    b = x.shape[0]
    exponent = np.exp(rng.uniform(-gamma, gamma, b)).astype(np.float32)
    sigma = rng.uniform(0.0, noise, b).astype(np.float32)
    seed = int(rng.integers(2**31))
    generator = torch.Generator(device=x.device).manual_seed(seed)
    jitter = torch.randn(x.shape, generator=generator, device=x.device)
    x = 255.0 * (x / 255.0).clamp(0.0, 1.0) ** torch.from_numpy(exponent).to(x.device).view(
        b, 1, 1, 1
    )
    return (x + jitter * torch.from_numpy(sigma).to(x.device).view(b, 1, 1, 1)).clamp_(0.0, 255.0)


def projection_head(feature_dim: int, out_dim: int) -> nn.Module:
    """SimCLR's two-layer MLP on the pooled features."""
    return nn.Sequential(
        nn.Linear(feature_dim, feature_dim), nn.ReLU(inplace=True), nn.Linear(feature_dim, out_dim)
    )


def pretrain_ssl(
    videos: Sequence[DecodedVideo],
    spec: InputSpec,
    width: int,
    settings: SSLPretraining,
    *,
    device: torch.device,
    groups: Sequence[str] | None = None,
    progress: bool = False,
    desc: str = "ssl pretraining",
) -> SSLResult:
    """A TSM backbone pretrained with SimCLR on ``videos`` (no labels read).

    Args:
        videos: Training patients' videos only; the caller keeps test patients out.
        spec: Frames per clip and frame size of the model to start.
        width: First-stage channels of the model to start.
        settings: The run's settings.
        device: Where to compute.
        groups: Optional patient id per video (see ``nt_xent``).
        progress: Show a progress bar.
        desc: Label of the progress bar.

    Raises:
        ValueError: fewer than two videos, or ``groups`` of another length.
    """
    if len(videos) < 2:
        raise ValueError(f"contrastive pretraining needs at least 2 videos, got {len(videos)}")
    if groups is not None and len(groups) != len(videos):
        raise ValueError(f"{len(groups)} group ids for {len(videos)} videos")
    started = time.perf_counter()
    torch.manual_seed(settings.seed)
    rng = np.random.default_rng(settings.seed)
    group_ids = None
    if groups is not None:
        group_ids = torch.from_numpy(np.unique(np.asarray(groups), return_inverse=True)[1])
    model = TSMResNet(num_outputs=1, spec=spec, width=width).to(device)  # fc: never trained
    head = projection_head(model.feature_dim, settings.projection_dim).to(device)
    parameters = [p for n, p in model.named_parameters() if not n.startswith("fc.")]
    parameters += list(head.parameters())
    optimizer = torch.optim.AdamW(parameters, lr=settings.lr, weight_decay=settings.weight_decay)
    batch = min(settings.batch_size, len(videos))
    steps = settings.epochs * (len(videos) // batch)
    scheduler = torch.optim.lr_scheduler.CosineAnnealingLR(
        optimizer, T_max=max(steps, 1), eta_min=settings.lr * 0.01
    )
    losses: list[float] = []
    model.train()
    head.train()
    bar = tqdm(range(settings.epochs), desc=desc, unit="epoch", disable=not progress)
    for _ in bar:
        order = rng.permutation(len(videos))
        epoch_losses = []
        # Whole batches only: a last batch of one video would hold no negative.
        for start in range(0, len(order) - batch + 1, batch):
            idx = order[start : start + batch]
            views = np.stack([two_views(videos[i], spec, settings.window, rng) for i in idx])
            x = torch.from_numpy(np.concatenate([views[:, 0], views[:, 1]])).to(device)
            x = augment_clips(x, settings.augment, rng)
            x = photometric(x, settings.gamma, settings.noise, rng)
            z = head(model.features(x))
            loss = nt_xent(
                z[: len(idx)],
                z[len(idx) :],
                settings.temperature,
                None if group_ids is None else group_ids[torch.from_numpy(idx)],
            )
            optimizer.zero_grad(set_to_none=True)
            loss.backward()  # type: ignore[no-untyped-call]
            optimizer.step()
            scheduler.step()
            epoch_losses.append(loss.item())
        losses.append(float(np.mean(epoch_losses)))
        bar.set_postfix({"loss": round(losses[-1], 3)})
    model.eval()
    return SSLResult(
        model=model, losses=losses, seconds=time.perf_counter() - started, videos=len(videos)
    )


def save_pretrained(result: SSLResult, path: Path, fingerprint: str) -> None:
    """Keep a run's backbone (safetensors, no pickle) so a resumed evaluation skips it."""
    path.parent.mkdir(parents=True, exist_ok=True)
    state = {k: v.detach().cpu().contiguous() for k, v in result.model.state_dict().items()}
    record = {"losses": result.losses, "seconds": result.seconds, "videos": result.videos}
    tmp = path.with_name(path.name + ".tmp")
    save_file(state, str(tmp), metadata={"fingerprint": fingerprint, "run": json.dumps(record)})
    tmp.replace(path)  # a crash mid-write never leaves a half file under the real name


def load_pretrained(
    path: Path, fingerprint: str, spec: InputSpec, width: int, device: torch.device
) -> SSLResult | None:
    """The run kept by ``save_pretrained``; None when absent or made for other settings."""
    if not path.exists():
        return None
    with safe_open(str(path), framework="pt") as f:
        metadata = f.metadata() or {}
    if metadata.get("fingerprint") != fingerprint:
        return None
    model = TSMResNet(num_outputs=1, spec=spec, width=width)
    model.load_state_dict(load_file(str(path)))
    record = json.loads(metadata["run"])
    return SSLResult(
        model=model.to(device).eval(),
        losses=[float(x) for x in record["losses"]],
        seconds=float(record["seconds"]),
        videos=int(record["videos"]),
    )
