"""The biomarker model learns the 38 biomarkers from synthetic cine loops (reduced model, CPU)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from biomarker_service.artifact import load_artifact
from lus.synthetic import generate_dataset
from trainer.augment import ClipAugment
from trainer.biomarker_training import (
    BiomarkerTrainingConfig,
    predict_videos,
    train_biomarker_model,
)
from trainer.manifest import read_manifest
from trainer.metrics import macro_auc, per_biomarker_auc
from trainer.video_cache import decode_all

SIZE = 64


@pytest.mark.slow
def test_reduced_tsm_reaches_macro_auc_on_held_out_synthetic_videos(tmp_path: Path) -> None:
    train = generate_dataset(
        tmp_path / "train", n_videos=500, seed=0, frames=16, height=SIZE, width=SIZE, progress=False
    )
    held_out = generate_dataset(
        tmp_path / "test",
        n_videos=120,
        seed=777,
        frames=16,
        height=SIZE,
        width=SIZE,
        progress=False,
    )
    result = train_biomarker_model(
        BiomarkerTrainingConfig(
            manifest=train,
            out=tmp_path / "model.safetensors",
            frames=8,
            size=SIZE,
            clips=2,
            width=16,
            epochs=20,
            batch_size=16,
            lr=1e-3,
            seed=0,
            device="cpu",
            progress=False,
            augment=ClipAugment.none(),  # a 20-epoch schedule learns faster without
            oversample=False,
            # Exact labels on 500 videos: dropout (default 0.5, against memorising a few real
            # patient groups) only slows this short schedule (held-out macro AUC 0.848 with it,
            # 0.868 without, on 2 shared cores).
            dropout=0.0,
        )
    )
    model, info = load_artifact(result.artifact)
    assert "NOT FOR CLINICAL USE" in info.provenance.notice
    assert result.history[-1]["train_loss"] < result.history[0]["train_loss"]

    rows = read_manifest(held_out, info.schema)
    videos = decode_all([r.video for r in rows], size=SIZE, progress=False)
    scores = predict_videos(model, videos, torch.device("cpu"))
    labels = np.stack([r.labels for r in rows])
    aucs = per_biomarker_auc(labels, scores)
    assert np.isfinite(aucs).sum() >= 36, (
        "held-out set should hold both classes of nearly every biomarker"
    )
    assert macro_auc(labels, scores) >= 0.85, dict(
        zip(info.schema.keys, aucs.round(2), strict=True)
    )
