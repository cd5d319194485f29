"""``lus eval`` on synthetic cine loops: identical patient-level folds, out-of-fold vectors,
every method scored, a Table-1 report written, and fixed seeds reproduce the figures."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pytest

from lus.synthetic import generate_dataset
from tests.fakes import TINY_EVAL as TINY
from trainer.augment import ClipAugment
from trainer.evaluation import METHODS, EvalConfig, run_evaluation
from trainer.report import write_report
from trainer.report_intervals import ROUTES


@pytest.fixture(scope="module")
def manifests(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    root = tmp_path_factory.mktemp("eval")
    kwargs = {"frames": 8, "height": 32, "width": 32, "progress": False}
    train = generate_dataset(root / "train", n_videos=60, seed=0, **kwargs)  # type: ignore[arg-type]
    test = generate_dataset(root / "test", n_videos=16, seed=5, **kwargs)  # type: ignore[arg-type]
    return train, test


def test_every_method_on_identical_folds_and_a_table1_report(
    manifests: tuple[Path, Path], tmp_path: Path
) -> None:
    train, test = manifests
    cfg = EvalConfig(manifest=train, tasks=("severity", "disease"), test_manifest=test, **TINY)  # type: ignore[arg-type]
    result = run_evaluation(cfg)

    # Out-of-fold: every training-manifest video is scored by exactly one fold, whose biomarker
    # model never saw its patient; the same folds serve every method.
    tested = np.concatenate([f.test for f in result.folds])
    assert sorted(tested.tolist()) == list(range(result.n_internal))
    for fold in result.folds:
        seen = set(result.patients[np.concatenate([fold.train, fold.val])])
        assert not seen & set(result.patients[fold.test])
    assert np.isfinite(result.oof_vectors).all()
    for (method, task_name), run in result.runs.items():
        task = next(t for t in result.tasks if t.name == task_name)
        labelled = task.labelled(np.arange(result.n_internal))
        assert np.isfinite(run.oof[labelled]).all(), (method, task_name)
        assert len(run.external) == 3

    path = write_report(result, tmp_path / "report", {"command": "test", "data": "synthetic"})
    text = path.read_text()
    assert "## Table 1" in text and "## External test set" in text
    with (tmp_path / "report" / "table1.csv").open() as handle:
        rows = {r["method"]: r for r in csv.DictReader(handle)}
    assert set(rows) == set(METHODS)
    for name in ("confusion_severity.png", "confusion_disease.png", "biomarker_auc.png"):
        assert (tmp_path / "report" / "plots" / name).stat().st_size > 1000
    summary = json.loads((tmp_path / "report" / "results.json").read_text())
    # Issue 15: every figure has a patient-level interval, every zoo family its row, each
    # biomarker route is compared with each end-to-end baseline on the same patients, and the
    # external set gets per-biomarker AUCs and per-class sensitivity/specificity.
    for task in ("severity", "disease"):
        intervals = summary["intervals"][task]
        for method in METHODS:
            for metric in ("auc", "accuracy", "f1"):
                ci = intervals["methods"][method][metric]
                assert 0 <= ci["low"] <= ci["high"] <= 1 and ci["n"] > 0, (method, metric)
        assert set(intervals["families"]["biomarker_experts_per_clip"]) == set(TINY["zoo_families"])  # type: ignore[arg-type]
        pairs = {(d["route"], d["baseline"]) for d in intervals["differences"]}
        # Five route variants (the 38-d vectors four ways, and the embedding) x two baselines.
        assert ("biomarker_experts", "end_to_end") in pairs and len(pairs) == 10
        assert ("embedding_experts", "end_to_end") in pairs
        # Item 6: the embedding against each of the four 38-d variants, on the same patients.
        against = {(d["route"], d["baseline"]) for d in intervals["embedding_differences"]}
        assert against == {("embedding_experts", r) for r in ROUTES if r != "embedding_experts"}
    assert summary["external"]["biomarkers"][0]["auc"]["n"] > 0
    assert set(summary["external"]["tasks"]["disease"]) == set(METHODS)
    assert "inside the noise" in text or "beyond the noise" in text
    assert "## Embedding route minus the 38-d route" in text
    assert "## Every zoo family" in text and "## External set: biomarkers and classes" in text
    # The synthetic tasks are functions of the biomarkers, so experts on the true biomarker
    # labels must learn them; the majority class carries no signal.
    for task in ("severity", "disease"):
        assert float(rows["gt_biomarker_experts"][f"{task}_auc_pooled"]) >= 0.7
        # Constant within a fold (pooled, the folds' different majorities can shift it a bit).
        assert float(rows["majority"][f"{task}_auc_mean"]) == pytest.approx(0.5)
        assert summary["methods"]["majority"]["tasks"][task]["n_scored"] == 60


def test_fixed_seed_reproduces_the_same_numbers(manifests: tuple[Path, Path]) -> None:
    train, _ = manifests
    cfg = {**TINY, "epochs": 1, "augment": ClipAugment()}
    runs = [
        run_evaluation(
            EvalConfig(manifest=train, tasks=("severity",), methods=("biomarker_experts",), **cfg)  # type: ignore[arg-type]
        )
        for _ in range(2)
    ]
    np.testing.assert_array_equal(runs[0].oof_vectors, runs[1].oof_vectors)
    first, second = (r.runs[("biomarker_experts", "severity")] for r in runs)
    np.testing.assert_array_equal(first.oof, second.oof)
    assert first.chosen == second.chosen
