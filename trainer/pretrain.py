"""Initialisation sources that need no internet: synthetic pretraining, then fine-tuning.

``synthetic``: a TSM ResNet-18 is trained on the generator's cine loops with its 38 exact
labels (``gare2022-lus38``); its weights, all but the head, start the real model, whose head is
new (the real schema's size). Early stages can be frozen during fine-tuning. The synthetic data
holds no patient, so one pretrained model serves every fold without leaking test patients.

``ssl``: self-supervised pretraining on the training patients' own clips
(``trainer.ssl_pretrain``); it sees patients, so ``lus eval`` makes one per fold.
"""

from __future__ import annotations

import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import numpy as np
import torch

from biomarker_service.model import TSMResNet, tsm_resnet18
from lus.schema import DEFAULT_SCHEMA, load_schema
from lus.synthetic import DEFAULT_STYLE_VERSION, generate_dataset
from lus.video import InputSpec
from trainer.augment import ClipAugment
from trainer.fit import FitConfig, fit_tsm
from trainer.manifest import read_manifest
from trainer.video_cache import decode_all

InitSource = Literal["random", "synthetic", "ssl"]
INIT_SOURCES: tuple[InitSource, ...] = ("random", "synthetic", "ssl")
STAGES = ("stem", "layer1", "layer2", "layer3", "layer4")
"""Stages that ``freeze`` can name, in order; ``stem`` is conv1 and bn1."""


@dataclass(frozen=True)
class SyntheticPretraining:
    """How the synthetic initialisation is made.

    Attributes:
        videos: Synthetic cine loops to train on.
        epochs: Epochs over them.
        lr: AdamW learning rate.
        seed: Seeds the generator and the training.
        freeze: Stages kept fixed while fine-tuning (``STAGES`` prefix, e.g. ``("stem",
            "layer1")``); empty trains everything.
        style: The generator's style version (``lus.synthetic.STYLE_VERSIONS``; ``v2`` is
            closer to real clips, docs/reports/pocus/domain-gap/).
    """

    videos: int = 400
    epochs: int = 10
    lr: float = 1e-3
    seed: int = 0
    freeze: tuple[str, ...] = ()
    style: str = DEFAULT_STYLE_VERSION

    def provenance(self) -> dict[str, float]:
        """The source as numbers for an artifact's provenance metrics."""
        return {
            "init_synthetic": 1.0,
            "init_synthetic_videos": float(self.videos),
            "init_synthetic_epochs": float(self.epochs),
            "init_synthetic_seed": float(self.seed),
            "init_frozen_stages": float(len(self.freeze)),
            "init_synthetic_style": float(self.style.removeprefix("v")),
        }

    def describe(self) -> str:
        frozen = f", {'/'.join(self.freeze)} frozen" if self.freeze else ""
        return (
            f"synthetic pretraining ({self.videos} generated videos, style {self.style}, "
            f"{self.epochs} epochs, seed {self.seed}{frozen})"
        )


def pretrain_synthetic(
    spec: InputSpec,
    width: int,
    source: SyntheticPretraining,
    *,
    device: torch.device,
    workdir: Path | None = None,
    progress: bool = False,
) -> TSMResNet:
    """A TSM model trained on ``source.videos`` generated loops and their 38 labels."""
    with tempfile.TemporaryDirectory(dir=workdir) as tmp:
        manifest = generate_dataset(
            Path(tmp),
            n_videos=source.videos,
            seed=source.seed,
            frames=max(16, 2 * spec.frames_per_clip),
            height=spec.size,
            width=spec.size,
            progress=progress,
            style_version=source.style,
        )
        schema = load_schema(DEFAULT_SCHEMA)
        rows = read_manifest(manifest, schema)
        videos = decode_all([r.video for r in rows], size=spec.size, progress=progress)
    labels = np.stack([r.labels for r in rows])
    torch.manual_seed(source.seed)
    model = tsm_resnet18(schema=schema, spec=spec, width=width).to(device)
    fit = FitConfig(
        epochs=source.epochs,
        batch_size=16,
        lr=source.lr,
        seed=source.seed,
        augment=ClipAugment.none(),  # exact labels and many videos: no need, and faster
        oversample=False,
        dropout=0.0,
        progress=progress,
        desc="synthetic pretraining",
    )
    fit_tsm(model, device, (videos, labels), None, objective="multilabel", cfg=fit)
    return model


def start_from(model: TSMResNet, source: TSMResNet, *, freeze: tuple[str, ...] = ()) -> int:
    """Copy ``source``'s weights (all but the head) into ``model``; freeze the named stages.

    Returns:
        How many tensors were copied.

    Raises:
        ValueError: an unknown stage name.
    """
    unknown = set(freeze) - set(STAGES)
    if unknown:
        raise ValueError(f"unknown stage(s) {sorted(unknown)}; choose from {STAGES}")
    own = model.state_dict()
    start = {
        k: v
        for k, v in source.state_dict().items()
        if not k.startswith("fc.") and k in own and own[k].shape == v.shape
    }
    model.load_state_dict(start, strict=False)
    prefixes = tuple(["conv1.", "bn1."] if s == "stem" else [f"{s}."] for s in freeze)
    flat = tuple(p for group in prefixes for p in group)
    for name, parameter in model.named_parameters():
        if flat and name.startswith(flat):
            parameter.requires_grad_(False)
    return len(start)
