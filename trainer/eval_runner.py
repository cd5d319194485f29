"""Per-fold work of an evaluation: the deep phase (TSM models) and the zoo phase (experts).

Every zoo method presents its inputs as an array ``(n_rows, m, d)``: ``m`` vectors per video
(1, or one per inference clip), fit as ``m`` rows of the video's label, and a video's answer is
the mean of its ``m`` answers. Which vectors fill it is what separates the biomarker-route
variants (``trainer.eval_methods``).
"""

from __future__ import annotations

import hashlib
import time
from collections.abc import Callable
from dataclasses import replace

import numpy as np

from biomarker_service.model import TSMResNet
from biomarker_service.torch_backend import pick_device
from lus.schema import load_schema
from lus.video import InputSpec
from trainer.baselines import TaskData, majority_proba, predict_task, train_end_to_end
from trainer.biomarker_training import train_biomarker_network
from trainer.eval_methods import SOURCES, ZOO_METHODS
from trainer.eval_types import EvalConfig, EvalData, MethodRun
from trainer.fit import FitConfig, predict_clips, video_features
from trainer.folds import Fold
from trainer.label_treatment import treat_labels
from trainer.pretrain import pretrain_synthetic
from trainer.ssl_pretrain import load_pretrained, pretrain_ssl, save_pretrained
from trainer.zoo import fit_zoo, probabilities

LOGIT_EPS = 1e-6
"""Probabilities are clipped to [eps, 1 - eps] before the logit of ``standardise``."""
MIN_SCALE = 1e-3
"""Smallest standard deviation ``standardise`` divides by (a near-constant output stays flat)."""


def logits(p: np.ndarray) -> np.ndarray:
    q = np.clip(p, LOGIT_EPS, 1 - LOGIT_EPS)
    out: np.ndarray = np.log(q / (1 - q))
    return out


def standardiser(reference: np.ndarray) -> Callable[[np.ndarray], np.ndarray]:
    """Logit z-score with the mean and spread of one model's outputs on ``reference`` rows.

    Fold models are calibrated differently (one says 0.2 where another says 0.6 for the same
    finding), so an expert fit across models' vectors reads them on different scales. Each
    model's outputs are put on its own scale; no label is used.
    """
    ref = logits(reference.reshape(-1, reference.shape[-1]))
    mean, scale = ref.mean(axis=0), np.maximum(ref.std(axis=0), MIN_SCALE)

    def apply(p: np.ndarray) -> np.ndarray:
        z: np.ndarray = (logits(p) - mean) / scale
        return z

    return apply


def pretraining_rows(fold: Fold, patients: np.ndarray, n_internal: int) -> np.ndarray:
    """The rows a fold's own pretraining may see: its training and validation rows.

    Raises:
        RuntimeError: a test row, a test patient or an external row among them (a fold
            built wrongly; pretraining on it would leak the figures' patients).
    """
    rows = np.sort(np.concatenate([fold.train, fold.val]))
    test_patients = set(patients[fold.test].tolist())
    if (
        np.isin(rows, fold.test).any()
        or (rows >= n_internal).any()
        or test_patients & set(patients[rows].tolist())
    ):
        raise RuntimeError(f"fold {fold.index}: its pretraining rows hold test or external rows")
    return rows


def zscore(x: np.ndarray, reference: np.ndarray) -> np.ndarray:
    """Each column on the mean and spread of ``reference`` (a fold's fitting rows: no test row).

    Embedding channels differ in scale by orders of magnitude (ReLU averages), and half the zoo
    (SVM, k-NN, MLPs) reads raw distances; the 38-d route's probabilities share one scale.
    """
    mean, scale = reference.mean(axis=0), np.maximum(reference.std(axis=0), MIN_SCALE)
    out: np.ndarray = ((x - mean) / scale).astype(np.float32)
    return out


class FoldRunner:
    """Holds the per-fold state of one evaluation."""

    def __init__(self, cfg: EvalConfig, data: EvalData, folds: list[Fold]) -> None:
        self.cfg, self.data, self.folds = cfg, data, folds
        self.device = pick_device(cfg.device)
        self.spec = InputSpec(frames_per_clip=cfg.frames, size=cfg.size, clips=cfg.clips)
        n_all, n_bio = len(data.rows), data.biomarkers.shape[1]
        self._n_all = n_all
        # Clip vectors of every row from the model that scored it: test rows out-of-fold.
        self.oof_clips = np.full((data.n_internal, cfg.clips, n_bio), np.nan, dtype=np.float32)
        self.oof_std = np.full((data.n_internal, cfg.clips, n_bio), np.nan, dtype=np.float32)
        self.external_clips: list[np.ndarray] = []
        self.external_std: list[np.ndarray] = []
        self.own_clips: list[np.ndarray] = []  # per fold: model k's clips of every row it saw
        self.embeddings: list[np.ndarray] = []  # per fold: model k's pooled embedding of every row
        self.bio_seconds: list[float] = []
        self.features: dict[str, list[np.ndarray]] = {t.name: [] for t in data.tasks}
        self.e2e_seconds: dict[str, list[float]] = {t.name: [] for t in data.tasks}
        self.runs: dict[tuple[str, str], MethodRun] = {}
        self.init_model: TSMResNet | None = None  # synthetic: one for all folds
        self.init_seconds = 0.0
        self.init_fold_seconds: list[float] = []  # ssl: per fold
        self.init_rows: list[np.ndarray] = []  # ssl: per fold, the rows it pretrained on
        if cfg.init == "synthetic":
            started = time.perf_counter()
            self.init_model = pretrain_synthetic(
                self.spec, cfg.width, cfg.synthetic, device=self.device, progress=cfg.progress
            )
            self.init_seconds = time.perf_counter() - started
        for method in cfg.methods:
            for task in data.tasks:
                oof = np.full((data.n_internal, len(task.labels)), np.nan)
                self.runs[(method, task.name)] = MethodRun(oof=oof, source=SOURCES.get(method, ""))

    @property
    def oof_vectors(self) -> np.ndarray:
        """``(n_internal, n_biomarkers)`` out-of-fold vectors: each video's clips averaged."""
        mean: np.ndarray = self.oof_clips.mean(axis=1)
        return mean

    @property
    def external_vectors(self) -> np.ndarray | None:
        """The external rows' vectors averaged over clips and fold models; None without any."""
        if not self.external_clips or not len(self.data.external):
            return None
        mean: np.ndarray = np.mean([c.mean(axis=1) for c in self.external_clips], axis=0)
        return mean

    def _fit_config(self, name: str, fold: Fold) -> FitConfig:
        cfg = self.cfg
        if cfg.init != "random":  # another start is another run: never resume across them
            name = f"{name}-init-{cfg.init}"
        if cfg.init == "ssl":  # nor across pretraining settings
            name += "-" + hashlib.sha256(repr(cfg.ssl).encode()).hexdigest()[:8]
        if cfg.init == "synthetic" and cfg.synthetic.style != "v1":  # v1 runs keep their names
            name += f"-style-{cfg.synthetic.style}"
        checkpoint = None
        if cfg.checkpoint_dir is not None:
            checkpoint = cfg.checkpoint_dir / f"{name}-fold{fold.index}.pt"
        return FitConfig(
            epochs=cfg.epochs,
            batch_size=cfg.batch_size,
            lr=cfg.lr,
            seed=cfg.seed + fold.index,
            augment=cfg.augment,
            schedule=cfg.schedule,
            dropout=cfg.dropout,
            weight_decay=cfg.weight_decay,
            checkpoint=checkpoint,
            progress=cfg.progress,
            desc=f"{name} fold {fold.index + 1}/{len(self.folds)}",
            bf16=cfg.bf16,
        )

    def _record(
        self, method: str, task: TaskData, fold: Fold, predict: Callable[[np.ndarray], np.ndarray]
    ) -> MethodRun:
        run = self.runs[(method, task.name)]
        test = task.labelled(fold.test)
        if len(test):
            run.oof[test] = predict(test)
        run.fold_rows.append(test)
        if len(self.data.external):
            run.external.append(predict(self.data.external))
        return run

    def fold_init(self, fold: Fold) -> TSMResNet | None:
        """The fold's starting model: the shared synthetic one, or one pretrained (``ssl``) on
        the fold's training and validation videos only, its time added to ``init_seconds``."""
        cfg, data = self.cfg, self.data
        if cfg.init != "ssl":
            return self.init_model
        rows = pretraining_rows(fold, data.patients, data.n_internal)
        settings = replace(cfg.ssl, seed=cfg.ssl.seed + fold.index)
        digest = hashlib.sha256(np.ascontiguousarray(rows).tobytes()).hexdigest()[:16]
        fingerprint = f"{settings!r}|{self.spec!r}|w{cfg.width}|rows {digest}"
        kept = (
            None
            if cfg.checkpoint_dir is None
            else cfg.checkpoint_dir / f"ssl-fold{fold.index}.safetensors"
        )
        result = None
        if kept is not None:  # a resumed evaluation reuses the fold's pretraining and its time
            result = load_pretrained(kept, fingerprint, self.spec, cfg.width, self.device)
        if result is None:
            result = pretrain_ssl(
                [data.videos[i] for i in rows],
                self.spec,
                cfg.width,
                settings,
                device=self.device,
                groups=[str(p) for p in data.patients[rows]],
                progress=cfg.progress,
                desc=f"ssl pretraining fold {fold.index + 1}/{len(self.folds)}",
            )
            if kept is not None:
                save_pretrained(result, kept, fingerprint)
        self.init_rows.append(rows)
        self.init_fold_seconds.append(result.seconds)
        self.init_seconds += result.seconds
        return result.model

    def deep_phase(self, fold: Fold) -> None:
        """Train the fold's biomarker model and end-to-end models; keep vectors and features."""
        cfg, data = self.cfg, self.data
        init = self.fold_init(fold)
        settings = cfg.init_settings()
        schema = load_schema(cfg.schema)
        videos = data.videos
        targets, weights = treat_labels(
            data.biomarkers[fold.train],
            schema,
            [data.rows[i].tasks for i in fold.train],
            cfg.label_treatment,
            unmarked_weight=cfg.unmarked_weight,
        )
        val = [videos[i] for i in fold.val], data.biomarkers[fold.val]
        model, result = train_biomarker_network(
            schema,
            self.spec,
            ([videos[i] for i in fold.train], targets),
            val if len(fold.val) else None,
            width=cfg.width,
            fit=self._fit_config("biomarkers", fold),
            device=self.device,
            weights=cfg.weights,
            label_weights=weights,
            init_from=init,
            freeze=settings.freeze if init is not None and settings is not None else (),
        )
        self.bio_seconds.append(result.seconds)
        own = "biomarker_experts_own" in cfg.methods
        seen = np.sort(np.concatenate([fold.train, fold.val])) if own else fold.test[:0]
        scored = np.concatenate([fold.test, data.external, seen])
        clips = predict_clips(model, [videos[i] for i in scored], self.device)
        n_test, n_ext = len(fold.test), len(data.external)
        self.oof_clips[fold.test] = clips[:n_test]
        self.external_clips.append(clips[n_test : n_test + n_ext])
        scale = standardiser(clips[:n_test])  # this model's outputs on the rows it scored
        self.oof_std[fold.test] = scale(clips[:n_test])
        self.external_std.append(scale(clips[n_test : n_test + n_ext]))
        if own:
            mine = np.full((self._n_all, *clips.shape[1:]), np.nan, dtype=np.float32)
            mine[np.concatenate([fold.test, data.external])] = clips[: n_test + n_ext]
            mine[seen] = clips[n_test + n_ext :]
            self.own_clips.append(mine)
        if "embedding_experts" in cfg.methods:
            embedding = video_features(model, videos, self.device)
            fitting = np.concatenate([fold.train, fold.val])
            self.embeddings.append(zscore(embedding, embedding[fitting]))
        for task in data.tasks:
            if {"end_to_end", "transfer_features"} & set(cfg.methods):
                self._end_to_end(task, fold, "end_to_end", init)
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
        bio_time = self.bio_seconds[-1] if method == "end_to_end_pretrained" else 0.0
        run.seconds.append(result.seconds + bio_time)
        run.chosen.append(f"epoch {result.kept_epoch}")

    def _with_external(self, internal: np.ndarray, external: np.ndarray) -> np.ndarray:
        x = np.full((self._n_all, *internal.shape[1:]), np.nan, dtype=np.float32)
        x[: self.data.n_internal] = internal
        if len(self.data.external):
            x[self.data.external] = external
        return x

    def zoo_inputs(self, fold: Fold, task_index: int) -> dict[str, tuple[np.ndarray, float]]:
        """Per zoo method of the run: its inputs ``(n_rows, m, d)`` and upstream seconds."""
        cfg, data, k = self.cfg, self.data, fold.index
        bio = self.bio_seconds[k]
        wanted = set(cfg.methods)
        inputs: dict[str, tuple[np.ndarray, float]] = {}
        pooled = self._with_external(self.oof_clips, self.external_clips[k])
        if "biomarker_experts" in wanted:
            inputs["biomarker_experts"] = (pooled.mean(axis=1, keepdims=True), bio)
        if "biomarker_experts_std" in wanted:
            std = self._with_external(self.oof_std, self.external_std[k])
            inputs["biomarker_experts_std"] = (std.mean(axis=1, keepdims=True), bio)
        if "biomarker_experts_own" in wanted:
            inputs["biomarker_experts_own"] = (self.own_clips[k].mean(axis=1, keepdims=True), bio)
        if "biomarker_experts_per_clip" in wanted:
            inputs["biomarker_experts_per_clip"] = (pooled, bio)
        if "embedding_experts" in wanted:
            inputs["embedding_experts"] = (self.embeddings[k][:, np.newaxis, :], bio)
        if "gt_biomarker_experts" in wanted:
            # Unknown labels sit halfway: the expert sees "not known", not "absent".
            truth = np.nan_to_num(data.biomarkers, nan=0.5)[:, np.newaxis, :]
            inputs["gt_biomarker_experts"] = (truth, 0.0)
        names = [t.name for t in data.tasks]
        if "transfer_features" in wanted and len(names) > 1:
            other = names[(task_index + 1) % len(names)]
            features = self.features[other][k][:, np.newaxis, :]
            inputs["transfer_features"] = (features, self.e2e_seconds[other][k])
        return inputs

    def zoo_phase(self, fold: Fold) -> None:
        """Fit the zoo-based methods of the fold on the fold's training and validation rows."""
        fit_rows = np.sort(np.concatenate([fold.train, fold.val]))
        for i, task in enumerate(self.data.tasks):
            for method, (x, upstream) in self.zoo_inputs(fold, i).items():
                self._zoo(
                    method, task=task, fold=fold, fit_rows=fit_rows, x=x, upstream_seconds=upstream
                )
            if "majority" in self.cfg.methods:
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
        assert method in ZOO_METHODS
        rows = task.labelled(fit_rows)
        m, d = x.shape[1], x.shape[2]
        started = time.perf_counter()
        result = fit_zoo(
            x[rows].reshape(-1, d),
            np.repeat(task.y[rows], m),
            np.repeat(self.data.patients[rows], m),
            families=self.cfg.zoo_families,
            seeds=self.cfg.zoo_seeds,
            val_fraction=self.cfg.val_fraction,
            split_seed=self.cfg.seed + fold.index,
        )
        seconds = time.perf_counter() - started

        def answer(estimator: object) -> Callable[[np.ndarray], np.ndarray]:
            def predict(r: np.ndarray) -> np.ndarray:
                proba = probabilities(estimator, x[r].reshape(-1, d), task.labels)
                mean: np.ndarray = proba.reshape(len(r), m, -1).mean(axis=1)
                return mean

            return predict

        run = self._record(method, task, fold, answer(result.estimator))
        test = task.labelled(fold.test)
        for family, (estimator, _) in result.by_family.items():
            oof = run.families.setdefault(family, np.full_like(run.oof, np.nan))
            if len(test):
                oof[test] = answer(estimator)(test)
        run.seconds.append(seconds + upstream_seconds)
        run.chosen.append(f"{result.family} seed {result.seed}")


def _majority(task: TaskData, fit_rows: np.ndarray) -> Callable[[np.ndarray], np.ndarray]:
    def predict(rows: np.ndarray) -> np.ndarray:
        return majority_proba(task, fit_rows, len(rows))

    return predict
