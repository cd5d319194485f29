"""Train the reduced biomarker model on synthetic cine loops; print held-out AUCs and timings.

The same setup as tests/integration/trainer/test_learning.py, with figures printed, not asserted:
    python benchmarks/synthetic_learning.py [--train 500 --test 120 --size 64 --epochs 20]
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from biomarker_service.artifact import load_artifact
from lus.provenance import SYNTHETIC_DATA_NOTICE
from lus.synthetic import generate_dataset
from trainer.augment import ClipAugment
from trainer.biomarker_training import (
    BiomarkerTrainingConfig,
    predict_videos,
    train_biomarker_model,
)
from trainer.manifest import read_manifest
from trainer.metrics import per_biomarker_auc
from trainer.video_cache import decode_all


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--train", type=int, default=500)
    parser.add_argument("--test", type=int, default=120)
    parser.add_argument("--size", type=int, default=64)
    parser.add_argument("--frames", type=int, default=8)
    parser.add_argument("--width", type=int, default=16)
    parser.add_argument("--epochs", type=int, default=20)
    parser.add_argument("--augment", action="store_true", help="the paper's augmentations")
    args = parser.parse_args()
    print(SYNTHETIC_DATA_NOTICE)
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        started = time.perf_counter()
        train = generate_dataset(
            root / "train",
            n_videos=args.train,
            seed=0,
            frames=16,
            height=args.size,
            width=args.size,
            progress=False,
        )
        test = generate_dataset(
            root / "test",
            n_videos=args.test,
            seed=777,
            frames=16,
            height=args.size,
            width=args.size,
            progress=False,
        )
        generated = time.perf_counter()
        config = BiomarkerTrainingConfig(
            manifest=train,
            out=root / "model.safetensors",
            frames=args.frames,
            size=args.size,
            clips=2,
            width=args.width,
            epochs=args.epochs,
            batch_size=16,
            lr=1e-3,
            seed=0,
            device="cpu",
            progress=False,
            augment=ClipAugment() if args.augment else ClipAugment.none(),
            oversample=False,
        )
        result = train_biomarker_model(config)
        trained = time.perf_counter()
        model, info = load_artifact(result.artifact)
        rows = read_manifest(test, info.schema)
        videos = decode_all([r.video for r in rows], size=args.size, progress=False)
        aucs = per_biomarker_auc(
            np.stack([r.labels for r in rows]), predict_videos(model, videos, torch.device("cpu"))
        )
    print(f"generate {args.train + args.test} videos: {generated - started:.1f} s")
    print(f"train {args.epochs} epochs on {args.train} videos: {trained - generated:.1f} s")
    print(
        f"held-out macro ROC AUC over {np.isfinite(aucs).sum()} biomarkers: {np.nanmean(aucs):.3f}"
    )
    for group in info.schema.groups:
        cells = [f"{b.level}={aucs[info.schema.index(b.key)]:.2f}" for b in group.biomarkers]
        print(f"  {group.display_name}: {', '.join(cells)}")


if __name__ == "__main__":
    main()
