"""Benchmark: fit the expert zoo (7 families x 3 seeds, patient-level validation) on 200 vectors.

Target (issue 5): <= 15 s on 2 CPU cores. Prints the wall time, per-family fit time and the
validation winner. Run: ``python benchmarks/trainer_zoo.py [--vectors 200] [--repeats 3]``.
"""

from __future__ import annotations

import argparse
import time
from collections import defaultdict

import numpy as np

from trainer.zoo import fit_zoo


def _vectors(n: int, seed: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """38-d biomarker-like probabilities, 4 classes, 2-4 vectors per patient."""
    rng = np.random.default_rng(seed)
    n_patients = n // 3
    base = rng.beta(0.7, 0.7, (n_patients, 38))
    patient = rng.integers(0, n_patients, n)
    patient[:n_patients] = np.arange(n_patients)  # every patient has a vector
    x = np.clip(base[patient] + rng.normal(0, 0.05, (n, 38)), 0, 1).astype(np.float32)
    score = base[:, 1] + base[:, 7] - base[:, 20] + rng.normal(0, 0.2, n_patients)
    y = np.digitize(score, np.quantile(score, [0.5, 0.75, 0.9])).astype(str)[patient]
    return x, y, np.array([f"p{p}" for p in patient])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--vectors", type=int, default=200)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    x, y, groups = _vectors(args.vectors, seed=0)
    walls = []
    per_family: dict[str, float] = defaultdict(float)
    for _ in range(args.repeats):
        started = time.perf_counter()
        result = fit_zoo(x, y, groups)
        walls.append(time.perf_counter() - started)
        for c in result.candidates:
            per_family[c.family] += c.fit_seconds / args.repeats
    print(
        f"zoo fit: {args.vectors} vectors, {len(set(groups))} patients, "
        f"{len(result.candidates)} fits (7 families x 3 seeds; k-NN has no seed)"
    )
    print(
        f"wall seconds: median {np.median(walls):.2f}, min {min(walls):.2f}, "
        f"max {max(walls):.2f} over {args.repeats} runs (target <= 15 s on 2 cores)"
    )
    for family, seconds in sorted(per_family.items(), key=lambda kv: -kv[1]):
        print(f"  {family:14s} {seconds:6.2f} s (all seeds)")
    best = result.best
    print(
        f"winner: {best.family} seed {best.seed}, val AUC {best.val_auc:.3f}, "
        f"val accuracy {best.val_accuracy:.3f}"
    )


if __name__ == "__main__":
    main()
