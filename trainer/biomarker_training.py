"""Train the TSM ResNet-18 biomarker model on a manifest with weak video-level labels.

The paper's protocol (Gare et al.): Adam at 1e-4, BCE over the schema's biomarkers with unknown
labels masked, ReduceLROnPlateau (0.5) on the validation macro AUC, the best epoch kept,
per-clip augmentations, oversampling of rare labels in the training rows, optional local
ImageNet weights, and a patient-level validation split. The loop itself is ``trainer.fit``.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from biomarker_service.artifact import ArtifactInfo, Provenance, new_version, save_artifact
from biomarker_service.model import TSMResNet, tsm_resnet18
from biomarker_service.torch_backend import pick_device
from lus.provenance import RESEARCH_DATA_NOTICE
from lus.schema import DEFAULT_SCHEMA, BiomarkerSchema, load_schema
from lus.video import DecodedVideo, InputSpec
from lus.video.region import CropMode
from trainer.augment import ClipAugment
from trainer.fit import FitConfig, FitResult, fit_tsm, masked_bce, predict_videos
from trainer.manifest import ManifestRow, read_manifest, split_by_patient
from trainer.video_cache import decode_all

__all__ = [
    "BiomarkerTrainingConfig",
    "TrainingResult",
    "masked_bce",
    "predict_videos",
    "train_biomarker_model",
    "train_biomarker_network",
]

logger = logging.getLogger(__name__)


@dataclass
class BiomarkerTrainingConfig:
    """``lus train biomarker`` settings; the defaults are the paper's.

    Attributes:
        manifest: Training manifest CSV.
        out: Artifact to write (.safetensors).
        schema: Schema name or JSON path.
        frames: Frames per clip (paper: 15).
        size: Frame size in pixels (paper: 224).
        clips: Clips averaged at inference (paper: 4).
        width: First-stage channels (64 = ResNet-18; smaller for CPU runs).
        epochs: Training epochs.
        batch_size: Clips per step.
        lr: Adam learning rate (paper: 1e-4).
        val_fraction: Share of patients held out for validation.
        seed: Seeds the split, the batches and the augmentations.
        weights: Optional local torchvision ResNet-18 (ImageNet) weights.
        device: ``auto`` (a GPU when present), ``cpu``, ``cuda``, ...
        workers: Decoding threads.
        progress: Show progress bars.
        augment: Augmentation ranges (``ClipAugment.none()`` to switch off).
        oversample: Repeat training videos with rare positive labels.
        checkpoint: Per-epoch checkpoint; an existing one is resumed.
        crop: "auto" cuts frames to the ultrasound imaging region first (stored in the artifact).
    """

    manifest: Path
    out: Path
    schema: str = DEFAULT_SCHEMA
    frames: int = 15
    size: int = 224
    clips: int = 4
    width: int = 64
    epochs: int = 30
    batch_size: int = 8
    lr: float = 1e-4
    val_fraction: float = 0.2
    seed: int = 0
    weights: Path | None = None
    device: str = "auto"
    workers: int = 2
    progress: bool = True
    augment: ClipAugment = field(default_factory=ClipAugment)
    oversample: bool = True
    checkpoint: Path | None = None
    crop: CropMode = "none"


@dataclass
class TrainingResult:
    artifact: Path
    info: ArtifactInfo
    history: list[dict[str, float]] = field(default_factory=list)


def train_biomarker_network(
    schema: BiomarkerSchema,
    spec: InputSpec,
    train: tuple[list[DecodedVideo], np.ndarray],
    val: tuple[list[DecodedVideo], np.ndarray] | None,
    *,
    width: int,
    fit: FitConfig,
    device: torch.device,
    weights: Path | None = None,
) -> tuple[TSMResNet, FitResult]:
    """A biomarker model fit on in-memory videos and ``(n, len(schema))`` labels (NaN unknown).

    Returns the model (on ``device``, best validation epoch) and the run's record.
    """
    model = tsm_resnet18(schema=schema, spec=spec, width=width, weights_path=weights).to(device)
    result = fit_tsm(model, device, train, val, objective="multilabel", cfg=fit)
    return model, result


def _describe_data(rows: list[ManifestRow], manifest: Path) -> tuple[str, str]:
    notices = {r.tasks.get("notice", "") for r in rows} - {""}
    notice = " ".join(sorted(notices)) or RESEARCH_DATA_NOTICE
    patients = len({r.patient_id for r in rows})
    return f"{manifest.name}: {len(rows)} videos, {patients} patients", notice


def train_biomarker_model(cfg: BiomarkerTrainingConfig) -> TrainingResult:
    """Train on ``cfg.manifest``; write the artifact (weights, schema, input spec, provenance)."""
    schema = load_schema(cfg.schema)
    spec = InputSpec(frames_per_clip=cfg.frames, size=cfg.size, clips=cfg.clips, crop=cfg.crop)
    rows = read_manifest(cfg.manifest, schema)
    train_rows, val_rows = split_by_patient(rows, cfg.val_fraction, cfg.seed)
    videos = decode_all(
        [r.video for r in rows],
        size=cfg.size,
        crop=cfg.crop,
        workers=cfg.workers,
        progress=cfg.progress,
    )
    by_path = dict(zip([r.video for r in rows], videos, strict=True))

    def part(part_rows: list[ManifestRow]) -> tuple[list[DecodedVideo], np.ndarray]:
        labels = np.stack([r.labels for r in part_rows]) if part_rows else np.zeros((0, 0))
        return [by_path[r.video] for r in part_rows], labels

    fit = FitConfig(
        epochs=cfg.epochs,
        batch_size=cfg.batch_size,
        lr=cfg.lr,
        seed=cfg.seed,
        augment=cfg.augment,
        oversample=cfg.oversample,
        checkpoint=cfg.checkpoint,
        progress=cfg.progress,
        desc="biomarkers",
    )
    model, result = train_biomarker_network(
        schema,
        spec,
        part(train_rows),
        part(val_rows) if val_rows else None,
        width=cfg.width,
        fit=fit,
        device=pick_device(cfg.device),
        weights=cfg.weights,
    )
    model = model.cpu().eval()
    training_data, notice = _describe_data(rows, cfg.manifest)
    metrics = {
        "epochs": float(cfg.epochs),
        "train_videos": float(len(train_rows)),
        "val_videos": float(len(val_rows)),
        "train_seconds": round(result.seconds, 1),
    }
    if val_rows and any("val_auc" in h for h in result.history):
        metrics["val_macro_auc"] = float(result.best_score)
    info = ArtifactInfo(
        version=new_version(schema, model),
        schema=schema,
        spec=spec,
        width=cfg.width,
        provenance=Provenance(training_data=training_data, notice=notice, metrics=metrics),
    )
    save_artifact(cfg.out, model, info)
    logger.info("wrote %s (version %s)", cfg.out, info.version)
    history = [
        {("val_macro_auc" if k == "val_auc" else k): v for k, v in h.items()}
        for h in result.history
    ]
    return TrainingResult(artifact=cfg.out, info=info, history=history)
