"""``lus eval``: the biomarker route against end-to-end baselines on identical patient-level folds.

Phase 1, per fold: the biomarker model is trained on the fold's training patients and scores
the fold's test patients, so every video's vector comes from a model that never trained on its
patient (out-of-fold vectors); the end-to-end models of each task are trained on the same rows.
Phase 2, per fold: expert zoos are fit on the out-of-fold vectors of the training patients (or on
another task's end-to-end features, or on ground-truth biomarker labels) and score the test
patients. An optional external test manifest is scored by every fold's models.
"""

from __future__ import annotations

import time

import numpy as np
import torch

from lus.errors import InvalidInput
from lus.schema import load_schema
from trainer.baselines import TaskData
from trainer.eval_methods import METHODS
from trainer.eval_runner import FoldRunner
from trainer.eval_types import EvalConfig, EvalData, EvalResult, MethodRun
from trainer.folds import patient_folds
from trainer.manifest import ManifestRow, read_manifest
from trainer.video_cache import decode_all

__all__ = ["METHODS", "EvalConfig", "EvalResult", "MethodRun", "run_evaluation"]


def _task_data(name: str, rows: list[ManifestRow], n_internal: int, cfg: EvalConfig) -> TaskData:
    """Labels of every row (internal, then external); the class list comes from internal rows."""
    where = cfg.manifest.name
    for row, manifest in ((rows[0], cfg.manifest), (rows[-1], cfg.test_manifest or cfg.manifest)):
        if name not in row.tasks:
            known = ", ".join(c for c in row.tasks if c != "notice")
            raise InvalidInput(f"{manifest} has no task column {name!r}; it has {known}")
    y = np.array([r.tasks[name].strip() for r in rows], dtype=object).astype(str)
    labels = tuple(sorted(set(y[:n_internal].tolist()) - {""}))
    if len(labels) < 2:
        raise InvalidInput(f"task {name!r} needs at least 2 classes in {where}; got {labels}")
    return TaskData(name, labels, y)


def _load(cfg: EvalConfig) -> EvalData:
    schema = load_schema(cfg.schema)
    rows = read_manifest(cfg.manifest, schema)
    n_internal = len(rows)
    if cfg.test_manifest is not None:
        rows = rows + read_manifest(cfg.test_manifest, schema)
    tasks = [_task_data(t, rows, n_internal, cfg) for t in cfg.tasks]
    for task in tasks:
        extra = set(task.y[n_internal:].tolist()) - set(task.labels) - {""}
        if extra:
            raise InvalidInput(f"test manifest has {task.name} labels {extra} unseen in training")
    videos = decode_all(
        [r.video for r in rows], size=cfg.size, workers=cfg.workers, progress=cfg.progress
    )
    return EvalData(
        rows,
        n_internal,
        videos,
        tasks,
        np.arange(n_internal, len(rows)),
        np.array([r.patient_id for r in rows]),
        np.stack([r.labels for r in rows]),
    )


def run_evaluation(cfg: EvalConfig) -> EvalResult:
    """Run every method of ``cfg.methods`` on identical folds; see the module docstring."""
    unknown = set(cfg.methods) - set(METHODS)
    if unknown:
        raise InvalidInput(f"unknown method(s) {sorted(unknown)}; choose from {list(METHODS)}")
    started = time.perf_counter()
    torch.manual_seed(cfg.seed)
    data = _load(cfg)
    internal = np.arange(data.n_internal)
    strata = data.tasks[0].y[internal]
    folds = patient_folds(
        data.patients[internal], strata, k=cfg.folds, val_fraction=cfg.val_fraction, seed=cfg.seed
    )
    runner = FoldRunner(cfg, data, folds)
    for fold in folds:
        runner.deep_phase(fold)
    for fold in folds:
        runner.zoo_phase(fold)
    return EvalResult(
        config=cfg,
        tasks=data.tasks,
        folds=folds,
        n_internal=data.n_internal,
        patients=data.patients,
        biomarker_keys=load_schema(cfg.schema).keys,
        biomarker_labels=data.biomarkers,
        oof_vectors=runner.oof_vectors,
        biomarker_seconds=runner.bio_seconds,
        runs=runner.runs,
        total_seconds=time.perf_counter() - started,
        external_vectors=runner.external_vectors,
        init_seconds=runner.init_seconds,
        init_fold_seconds=runner.init_fold_seconds,
        init_fold_videos=[len(rows) for rows in runner.init_rows],
    )
