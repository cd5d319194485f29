"""Train the TSM ResNet-18 biomarker model on a manifest with weak video-level labels.

Adam, masked BCE (unknown labels do not count), ReduceLROnPlateau on the validation macro AUC,
best checkpoint kept; patient-level validation split.
"""

from __future__ import annotations

import copy
import logging
import math
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from tqdm import tqdm

from biomarker_service.artifact import ArtifactInfo, Provenance, new_version, save_artifact
from biomarker_service.model import TSMResNet, tsm_resnet18
from biomarker_service.runner import pick_device
from lus.provenance import RESEARCH_DATA_NOTICE
from lus.schema import DEFAULT_SCHEMA, load_schema
from lus.video import DecodedVideo, InputSpec, make_clips
from trainer.manifest import ManifestRow, read_manifest, split_by_patient
from trainer.metrics import macro_auc
from trainer.video_cache import decode_all

logger = logging.getLogger(__name__)


@dataclass
class BiomarkerTrainingConfig:
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


@dataclass
class TrainingResult:
    artifact: Path
    info: ArtifactInfo
    history: list[dict[str, float]] = field(default_factory=list)


def masked_bce(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """BCE averaged over known labels only (NaN = unknown)."""
    known = ~torch.isnan(labels)
    if not known.any():
        return logits.sum() * 0.0
    return F.binary_cross_entropy_with_logits(logits[known], labels[known])


def _training_batch(
    videos: list[DecodedVideo], spec: InputSpec, rng: np.random.Generator
) -> torch.Tensor:
    clips = []
    for video in videos:
        clip = make_clips(video, spec, rng=rng)[0]
        if rng.random() < 0.5:
            clip = clip[:, :, ::-1]  # horizontal flip
        clips.append(np.ascontiguousarray(clip))
    return torch.from_numpy(np.stack(clips))


@torch.inference_mode()
def predict_videos(
    model: TSMResNet, videos: list[DecodedVideo], device: torch.device, batch_videos: int = 8
) -> np.ndarray:
    """Multi-clip-averaged probabilities ``(n_videos, n_biomarkers)``."""
    model.eval()
    out = []
    for start in range(0, len(videos), batch_videos):
        chunk = videos[start : start + batch_videos]
        clips = np.concatenate([make_clips(v, model.spec) for v in chunk])
        probs = torch.sigmoid(model(torch.from_numpy(clips).to(device))).float().cpu().numpy()
        out.append(probs.reshape(len(chunk), model.spec.clips, -1).mean(axis=1))
    return np.concatenate(out)


def _describe_data(rows: list[ManifestRow], manifest: Path) -> tuple[str, str]:
    notices = {r.tasks.get("notice", "") for r in rows} - {""}
    notice = " ".join(sorted(notices)) or RESEARCH_DATA_NOTICE
    patients = len({r.patient_id for r in rows})
    return f"{manifest.name}: {len(rows)} videos, {patients} patients", notice


def train_biomarker_model(cfg: BiomarkerTrainingConfig) -> TrainingResult:
    torch.manual_seed(cfg.seed)
    rng = np.random.default_rng(cfg.seed)
    schema = load_schema(cfg.schema)
    spec = InputSpec(frames_per_clip=cfg.frames, size=cfg.size, clips=cfg.clips)
    rows = read_manifest(cfg.manifest, schema)
    train_rows, val_rows = split_by_patient(rows, cfg.val_fraction, cfg.seed)
    videos = decode_all(
        [r.video for r in rows], size=cfg.size, workers=cfg.workers, progress=cfg.progress
    )
    by_path = dict(zip([r.video for r in rows], videos, strict=True))
    train_videos = [by_path[r.video] for r in train_rows]
    val_videos = [by_path[r.video] for r in val_rows]
    train_labels = np.stack([r.labels for r in train_rows])
    val_labels = np.stack([r.labels for r in val_rows]) if val_rows else None

    device = pick_device(cfg.device)
    model = tsm_resnet18(schema=schema, spec=spec, width=cfg.width, weights_path=cfg.weights).to(
        device
    )
    optimizer = torch.optim.Adam(model.parameters(), lr=cfg.lr)
    scheduler = torch.optim.lr_scheduler.ReduceLROnPlateau(
        optimizer, mode="max", factor=0.5, patience=2
    )
    best_state, best_auc, history = copy.deepcopy(model.state_dict()), -math.inf, []

    epochs = tqdm(range(cfg.epochs), desc="train", unit="epoch", disable=not cfg.progress)
    for epoch in epochs:
        model.train()
        order = rng.permutation(len(train_videos))
        losses = []
        for start in range(0, len(order), cfg.batch_size):
            idx = order[start : start + cfg.batch_size]
            clips = _training_batch([train_videos[i] for i in idx], spec, rng).to(device)
            labels = torch.from_numpy(train_labels[idx]).to(device)
            loss = masked_bce(model(clips), labels)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()  # type: ignore[no-untyped-call]
            optimizer.step()
            losses.append(loss.item())
        record = {"epoch": float(epoch + 1), "train_loss": float(np.mean(losses))}
        if val_labels is not None:
            record["val_macro_auc"] = macro_auc(
                val_labels, predict_videos(model, val_videos, device)
            )
        score = record.get("val_macro_auc", -record["train_loss"])
        if not math.isnan(score):
            scheduler.step(score)
            if score > best_auc:
                best_auc, best_state = score, copy.deepcopy(model.state_dict())
        history.append(record)
        epochs.set_postfix({k: round(v, 3) for k, v in record.items() if k != "epoch"})

    model.load_state_dict(best_state)
    model = model.cpu().eval()
    training_data, notice = _describe_data(rows, cfg.manifest)
    metrics = {
        "epochs": float(cfg.epochs),
        "train_videos": float(len(train_rows)),
        "val_videos": float(len(val_rows)),
    }
    if val_labels is not None and best_auc > -math.inf:
        metrics["val_macro_auc"] = float(best_auc)
    info = ArtifactInfo(
        version=new_version(schema, model),
        schema=schema,
        spec=spec,
        width=cfg.width,
        provenance=Provenance(training_data=training_data, notice=notice, metrics=metrics),
    )
    save_artifact(cfg.out, model, info)
    logger.info("wrote %s (version %s)", cfg.out, info.version)
    return TrainingResult(artifact=cfg.out, info=info, history=history)
