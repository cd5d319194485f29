"""Write a manifest's patient-level folds as manifests: ``fold<k>/train.csv`` and
``fold<k>/heldout.csv``, the same folds ``lus eval`` draws (``trainer.folds.patient_folds``).

For checks that need a model trained without some patients and run on them, such as the int8
parity gate on out-of-fold videos (docs/operations.md, "int8 parity gate")::

    python -m trainer.split_folds --manifest /work/shared/data/pocus/manifest.csv \\
        --folds 3 --strata diagnosis --seed 0 --out /tmp/folds

Training rows are each fold's training and validation patients; held-out rows its test
patients. Video paths are written absolute, so the new manifests work from any folder.
"""

from __future__ import annotations

import argparse
import csv
import sys
from pathlib import Path

import numpy as np

from lus.errors import InvalidInput
from trainer.folds import patient_folds


def split_manifest(
    manifest: Path, out: Path, *, folds: int, strata: str | None, seed: int
) -> list[tuple[Path, Path]]:
    """Write each fold's training and held-out manifests under ``out``; return their paths."""
    with manifest.open(newline="") as handle:
        reader = csv.DictReader(handle)
        columns = list(reader.fieldnames or [])
        rows = list(reader)
    for needed in ("video", "patient_id", *([strata] if strata else [])):
        if needed not in columns:
            raise InvalidInput(f"{manifest} has no {needed!r} column")
    for row in rows:
        row["video"] = str((manifest.parent / row["video"]).resolve())
    patients = np.array([r["patient_id"] for r in rows])
    labels = None if strata is None else np.array([r[strata] for r in rows])
    written = []
    for fold in patient_folds(patients, labels, k=folds, seed=seed):
        folder = out / f"fold{fold.index}"
        folder.mkdir(parents=True, exist_ok=True)
        parts = {"train": np.concatenate([fold.train, fold.val]), "heldout": fold.test}
        for name, indices in parts.items():
            with (folder / f"{name}.csv").open("w", newline="") as handle:
                writer = csv.DictWriter(handle, fieldnames=columns)
                writer.writeheader()
                writer.writerows(rows[i] for i in sorted(indices))
        written.append((folder / "train.csv", folder / "heldout.csv"))
        print(
            f"fold {fold.index}: {len(parts['train'])} training videos, {len(fold.test)} held out "
            f"({len(set(patients[fold.test]))} patients)"
        )
    return written


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m trainer.split_folds", description=__doc__)
    parser.add_argument("--manifest", type=Path, required=True)
    parser.add_argument("--out", type=Path, required=True, help="folder for fold<k>/*.csv")
    parser.add_argument("--folds", type=int, default=3)
    parser.add_argument("--strata", help="column to stratify folds by, e.g. diagnosis")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    try:
        split_manifest(
            args.manifest, args.out, folds=args.folds, strata=args.strata, seed=args.seed
        )
    except (InvalidInput, OSError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
