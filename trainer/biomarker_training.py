"""Train the TSM ResNet-18 biomarker model on a manifest with weak video-level labels.

The paper's protocol (Gare et al.): Adam at 1e-4, BCE over the schema's biomarkers with unknown
labels masked, ReduceLROnPlateau (0.5) on the validation macro AUC, the best epoch kept,
per-clip augmentations, oversampling of rare labels in the training rows, optional local
ImageNet weights, and a patient-level validation split. The loop itself is ``trainer.fit``.
By default, and recorded in the artifact's provenance: AdamW with weight decay, dropout before
the head, a cosine schedule with the last epoch kept (``trainer.fit``), and the label treatment
of "unmarked" zeros (``trainer.label_treatment``).
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
from trainer.fit import FitConfig, FitResult, Schedule, fit_tsm, masked_bce, predict_videos
from trainer.label_treatment import LabelTreatment, describe, label_metrics, treat_labels
from trainer.manifest import ManifestRow, read_manifest, split_by_patient
from trainer.pretrain import SyntheticPretraining, pretrain_synthetic, start_from
from trainer.ssl_pretrain import SSLPretraining, pretrain_ssl
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
        schedule: ``cosine`` (last epoch kept) or ``plateau`` (the paper's; best validation
            epoch kept).
        dropout: Dropout before the head while training.
        weight_decay: AdamW weight decay.
        label_treatment: What a 0 the schema calls "unmarked" is trained as
            (``trainer.label_treatment``).
        unmarked_weight: Weight of an unmarked 0 under ``down_weight``.
        synthetic_init: Start from a model pretrained on synthetic loops
            (``trainer.pretrain``); None starts from random weights (or ``weights``).
        ssl_init: Start from a model pretrained self-supervised (SimCLR) on this manifest's
            training and validation videos (``trainer.ssl_pretrain``); not with
            ``synthetic_init``.
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
    schedule: Schedule = "cosine"
    dropout: float = 0.5
    weight_decay: float = 1e-4
    label_treatment: LabelTreatment = "as_negative"
    unmarked_weight: float = 0.3
    synthetic_init: SyntheticPretraining | None = None
    ssl_init: SSLPretraining | None = None


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
    label_weights: np.ndarray | None = None,
    init_from: TSMResNet | None = None,
    freeze: tuple[str, ...] = (),
) -> tuple[TSMResNet, FitResult]:
    """A biomarker model fit on in-memory videos and ``(n, len(schema))`` labels (NaN unknown).

    ``label_weights`` weigh each training cell in the loss (``trainer.label_treatment``);
    ``init_from`` (e.g. ``trainer.pretrain.pretrain_synthetic``) starts every weight but the
    head, with the ``freeze`` stages kept fixed.
    Returns the model (on ``device``, at the kept epoch) and the run's record.
    """
    model = tsm_resnet18(schema=schema, spec=spec, width=width, weights_path=weights)
    if init_from is not None:
        start_from(model, init_from, freeze=freeze)
    model = model.to(device)
    result = fit_tsm(
        model, device, train, val, objective="multilabel", cfg=fit, label_weights=label_weights
    )
    return model, result


def init_description(
    weights: Path | None, source: SyntheticPretraining | SSLPretraining | None
) -> str:
    """Where the weights started, in words, for provenance and reports."""
    if source is not None:
        return source.describe()
    return "local ImageNet weights" if weights is not None else "random"


def _describe_data(rows: list[ManifestRow], manifest: Path) -> tuple[str, str]:
    notices = {r.tasks.get("notice", "") for r in rows} - {""}
    notice = " ".join(sorted(notices)) or RESEARCH_DATA_NOTICE
    patients = len({r.patient_id for r in rows})
    return f"{manifest.name}: {len(rows)} videos, {patients} patients", notice


def train_biomarker_model(cfg: BiomarkerTrainingConfig) -> TrainingResult:
    """Train on ``cfg.manifest``; write the artifact (weights, schema, input spec, provenance).

    Raises:
        ValueError: both ``synthetic_init`` and ``ssl_init`` set.
    """
    if cfg.synthetic_init is not None and cfg.ssl_init is not None:
        raise ValueError("choose one initialisation: synthetic_init or ssl_init, not both")
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

    train_videos, train_labels = part(train_rows)
    targets, label_weights = treat_labels(
        train_labels,
        schema,
        [r.tasks for r in train_rows],
        cfg.label_treatment,
        unmarked_weight=cfg.unmarked_weight,
    )

    fit = FitConfig(
        epochs=cfg.epochs,
        batch_size=cfg.batch_size,
        lr=cfg.lr,
        seed=cfg.seed,
        augment=cfg.augment,
        oversample=cfg.oversample,
        schedule=cfg.schedule,
        dropout=cfg.dropout,
        weight_decay=cfg.weight_decay,
        checkpoint=cfg.checkpoint,
        progress=cfg.progress,
        desc="biomarkers",
    )
    device = pick_device(cfg.device)
    source = cfg.synthetic_init or cfg.ssl_init
    init = None
    init_metrics: dict[str, float] = {}
    if cfg.synthetic_init is not None:
        init = pretrain_synthetic(
            spec, cfg.width, cfg.synthetic_init, device=device, progress=cfg.progress
        )
        init_metrics = cfg.synthetic_init.provenance()
    elif cfg.ssl_init is not None:
        # Every row of a training manifest is a training patient; nothing here is held out.
        seen = train_rows + val_rows
        ssl = pretrain_ssl(
            [by_path[r.video] for r in seen],
            spec,
            cfg.width,
            cfg.ssl_init,
            device=device,
            groups=[r.patient_id for r in seen],
            progress=cfg.progress,
        )
        init = ssl.model
        init_metrics = {
            **cfg.ssl_init.provenance(len(seen), len({r.patient_id for r in seen})),
            "init_ssl_seconds": round(ssl.seconds, 1),
            "init_ssl_final_loss": round(ssl.losses[-1], 4),
        }
    model, result = train_biomarker_network(
        schema,
        spec,
        (train_videos, targets),
        part(val_rows) if val_rows else None,
        width=cfg.width,
        fit=fit,
        device=device,
        weights=cfg.weights,
        label_weights=label_weights,
        init_from=init,
        freeze=source.freeze if source is not None else (),
    )
    model = model.cpu().eval()
    training_data, notice = _describe_data(rows, cfg.manifest)
    training_data += (
        f"; AdamW wd {cfg.weight_decay:g}, dropout {cfg.dropout:g}, {cfg.schedule} schedule,"
        f" biomarker 0s: {describe(cfg.label_treatment, cfg.unmarked_weight)};"
        f" init: {init_description(cfg.weights, source)}"
    )
    metrics = {
        "epochs": float(cfg.epochs),
        "train_videos": float(len(train_rows)),
        "val_videos": float(len(val_rows)),
        "train_seconds": round(result.seconds, 1),
        **result.protocol(fit),
        **label_metrics(cfg.label_treatment, cfg.unmarked_weight),
        **init_metrics,
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
