"""Per-fold work of an evaluation: the deep phase (TSM models) and the zoo phase (experts)."""

from __future__ import annotations

import time
from collections.abc import Callable

import numpy as np

from biomarker_service.model import TSMResNet
from biomarker_service.torch_backend import pick_device
from lus.schema import load_schema
from lus.video import InputSpec
from trainer.baselines import TaskData, majority_proba, predict_task, train_end_to_end
from trainer.biomarker_training import train_biomarker_network
from trainer.eval_types import EvalConfig, EvalData, MethodRun
from trainer.fit import FitConfig, predict_videos, video_features
from trainer.folds import Fold
from trainer.zoo import fit_zoo, probabilities


class FoldRunner:
    """Holds the per-fold state of one evaluation."""

    def __init__(self, cfg: EvalConfig, data: EvalData, folds: list[Fold]) -> None:
        self.cfg, self.data, self.folds = cfg, data, folds
        self.device = pick_device(cfg.device)
        self.spec = InputSpec(frames_per_clip=cfg.frames, size=cfg.size, clips=cfg.clips)
        n_all, n_bio = len(data.rows), data.biomarkers.shape[1]
        self.oof_vectors = np.full((data.n_internal, n_bio), np.nan, dtype=np.float32)
        self.external_vectors: list[np.ndarray] = []
        self.bio_seconds: list[float] = []
        self.features: dict[str, list[np.ndarray]] = {t.name: [] for t in data.tasks}
        self.e2e_seconds: dict[str, list[float]] = {t.name: [] for t in data.tasks}
        self.runs: dict[tuple[str, str], MethodRun] = {}
        for method in cfg.methods:
            for task in data.tasks:
                oof = np.full((data.n_internal, len(task.labels)), np.nan)
                self.runs[(method, task.name)] = MethodRun(oof=oof)
        self._n_all = n_all

    def _fit_config(self, name: str, fold: Fold) -> FitConfig:
        cfg = self.cfg
        checkpoint = None
        if cfg.checkpoint_dir is not None:
            checkpoint = cfg.checkpoint_dir / f"{name}-fold{fold.index}.pt"
        return FitConfig(
            epochs=cfg.epochs,
            batch_size=cfg.batch_size,
            lr=cfg.lr,
            seed=cfg.seed + fold.index,
            augment=cfg.augment,
            checkpoint=checkpoint,
            progress=cfg.progress,
            desc=f"{name} fold {fold.index + 1}/{len(self.folds)}",
        )

    def _scored_rows(self, task: TaskData, fold: Fold) -> np.ndarray:
        return task.labelled(fold.test)

    def _record(
        self, method: str, task: TaskData, fold: Fold, predict: Callable[[np.ndarray], np.ndarray]
    ) -> MethodRun:
        run = self.runs[(method, task.name)]
        test = self._scored_rows(task, fold)
        if len(test):
            run.oof[test] = predict(test)
        run.fold_rows.append(test)
        if len(self.data.external):
            run.external.append(predict(self.data.external))
        return run

    def deep_phase(self, fold: Fold) -> None:
        """Train the fold's biomarker model and end-to-end models; keep vectors and features."""
        cfg, data = self.cfg, self.data
        schema = load_schema(cfg.schema)
        videos = data.videos
        bio = [videos[i] for i in fold.train], data.biomarkers[fold.train]
        val = [videos[i] for i in fold.val], data.biomarkers[fold.val]
        model, result = train_biomarker_network(
            schema,
            self.spec,
            bio,
            val if len(fold.val) else None,
            width=cfg.width,
            fit=self._fit_config("biomarkers", fold),
            device=self.device,
            weights=cfg.weights,
        )
        self.bio_seconds.append(result.seconds)
        scored = np.concatenate([fold.test, data.external])
        vectors = predict_videos(model, [videos[i] for i in scored], self.device)
        self.oof_vectors[fold.test] = vectors[: len(fold.test)]
        self.external_vectors.append(vectors[len(fold.test) :])
        for task in data.tasks:
            if {"end_to_end", "transfer_features"} & set(cfg.methods):
                self._end_to_end(task, fold, "end_to_end", None)
            if "end_to_end_pretrained" in cfg.methods:
                self._end_to_end(task, fold, "end_to_end_pretrained", model)

    def _end_to_end(
        self, task: TaskData, fold: Fold, method: str, init_model: TSMResNet | None
    ) -> None:
        model, result = train_end_to_end(
            task,
            self.data.videos,
            fold.train,
            fold.val,
            spec=self.spec,
            width=self.cfg.width,
            fit=self._fit_config(f"{method}-{task.name}", fold),
            device=self.device,
            init_from=init_model,
        )
        if method == "end_to_end":
            self.e2e_seconds[task.name].append(result.seconds)
            self.features[task.name].append(video_features(model, self.data.videos, self.device))
        if method not in self.cfg.methods:
            return
        run = self._record(
            method,
            task,
            fold,
            lambda rows: predict_task(model, self.data.videos, rows, self.device),
        )
        bio_time = self.bio_seconds[-1] if init_model is not None else 0.0
        run.seconds.append(result.seconds + bio_time)
        best = max(range(len(result.history)), key=lambda i: _score(result.history[i]))
        run.chosen.append(f"epoch {best + 1}")

    def zoo_phase(self, fold: Fold) -> None:
        """Fit the zoo-based methods of the fold on the fold's training and validation rows."""
        data, cfg = self.data, self.cfg
        fit_rows = np.sort(np.concatenate([fold.train, fold.val]))
        vectors = np.full((self._n_all, self.oof_vectors.shape[1]), np.nan, dtype=np.float32)
        vectors[: data.n_internal] = self.oof_vectors
        if len(data.external):
            vectors[data.external] = self.external_vectors[fold.index]
        names = [t.name for t in data.tasks]
        for i, task in enumerate(data.tasks):
            inputs: dict[str, tuple[np.ndarray, float]] = {}
            if "biomarker_experts" in cfg.methods:
                inputs["biomarker_experts"] = (vectors, self.bio_seconds[fold.index])
            if "gt_biomarker_experts" in cfg.methods:
                # Unknown labels sit halfway: the expert sees "not known", not "absent".
                inputs["gt_biomarker_experts"] = (np.nan_to_num(data.biomarkers, nan=0.5), 0.0)
            if "transfer_features" in cfg.methods and len(names) > 1:
                other = names[(i + 1) % len(names)]
                seconds = self.e2e_seconds[other][fold.index]
                inputs["transfer_features"] = (self.features[other][fold.index], seconds)
            for method, (x, upstream) in inputs.items():
                self._zoo(
                    method, task=task, fold=fold, fit_rows=fit_rows, x=x, upstream_seconds=upstream
                )
            if "majority" in cfg.methods:
                run = self._record("majority", task, fold, _majority(task, fit_rows))
                run.seconds.append(0.0)
                run.chosen.append("majority")

    def _zoo(
        self,
        method: str,
        *,
        task: TaskData,
        fold: Fold,
        fit_rows: np.ndarray,
        x: np.ndarray,
        upstream_seconds: float,
    ) -> None:
        rows = task.labelled(fit_rows)
        started = time.perf_counter()
        result = fit_zoo(
            x[rows],
            task.y[rows],
            self.data.patients[rows],
            families=self.cfg.zoo_families,
            seeds=self.cfg.zoo_seeds,
            val_fraction=self.cfg.val_fraction,
            split_seed=self.cfg.seed + fold.index,
        )
        seconds = time.perf_counter() - started
        run = self._record(
            method,
            task,
            fold,
            lambda r: probabilities(result.estimator, x[r], task.labels),
        )
        run.seconds.append(seconds + upstream_seconds)
        run.chosen.append(f"{result.family} seed {result.seed}")


def _majority(task: TaskData, fit_rows: np.ndarray) -> Callable[[np.ndarray], np.ndarray]:
    def predict(rows: np.ndarray) -> np.ndarray:
        return majority_proba(task, fit_rows, len(rows))

    return predict


def _score(record: dict[str, float]) -> float:
    value = record.get("val_auc", float("nan"))
    return -record["train_loss"] if np.isnan(value) else value
