"""The evaluation's settings and results: what ``lus eval`` compares and what it found."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from expert_service.training.catalog import SEEDS, ZOO_FAMILIES
from lus.video import DecodedVideo
from trainer.augment import ClipAugment
from trainer.baselines import TaskData
from trainer.eval_methods import METHODS
from trainer.fit import Schedule
from trainer.folds import Fold
from trainer.label_treatment import LabelTreatment
from trainer.manifest import ManifestRow
from trainer.pretrain import InitSource, SyntheticPretraining
from trainer.ssl_pretrain import SSLPretraining


@dataclass
class EvalConfig:
    """What ``lus eval`` compares, on what, and at what model size.

    Attributes:
        manifest: Training manifest; k-fold by patient inside it.
        tasks: Task columns to evaluate, e.g. ``("diagnosis", "severity")``; rows with an empty
            value are left out of that task only.
        test_manifest: Optional external manifest of the same format, scored by every fold's
            models and used only for the final figures.
        schema: Biomarker schema of the manifest's biomarker columns.
        folds: Number of patient-level folds.
        val_fraction: Share of each fold's training patients held out for validation.
        seed: Seeds folds, training and zoo.
        frames: Frames per clip.
        size: Frame size in pixels.
        clips: Clips averaged at inference.
        width: First-stage channels of every TSM model.
        epochs: Epochs of every TSM model.
        batch_size: Clips per step.
        lr: AdamW learning rate.
        schedule: ``cosine`` (last epoch kept) or ``plateau`` (best validation epoch kept).
        dropout: Dropout before every TSM model's head (training only).
        weight_decay: AdamW weight decay of every TSM model.
        label_treatment: What an unmarked biomarker 0 is trained as
            (``trainer.label_treatment``).
        unmarked_weight: Weight of an unmarked 0 under ``down_weight``.
        bootstrap: Patient-level bootstrap resamples behind every interval of the report.
        init: Where every TSM model starts: ``random`` (or ``weights``), ``synthetic``
            (one model pretrained on generated loops, ``trainer.pretrain``) or ``ssl`` (per
            fold, a model pretrained self-supervised on that fold's training and validation
            videos only, ``trainer.ssl_pretrain``); the biomarker model and the plain
            end-to-end baselines start from it, with a new head.
        synthetic: How the synthetic initialisation is made (``init="synthetic"`` only).
        ssl: How the self-supervised initialisation is made (``init="ssl"`` only).
        weights: Optional local ImageNet ResNet-18 weights for every TSM model.
        device: ``auto``, ``cpu``, ``cuda``.
        methods: Methods to run (keys of ``METHODS``).
        zoo_families: Families of the expert zoo.
        zoo_seeds: Seeds per family.
        augment: Clip augmentations for every TSM model.
        checkpoint_dir: Per-run checkpoints; a rerun resumes finished and interrupted runs.
        workers: Decoding threads.
        progress: Show progress bars.
        bf16: Train every TSM model under bf16 autocast on CUDA (``trainer.fit.FitConfig``).
    """

    manifest: Path
    tasks: tuple[str, ...]
    test_manifest: Path | None = None
    schema: str = "pocus-weak6"
    folds: int = 5
    val_fraction: float = 0.2
    seed: int = 0
    frames: int = 15
    size: int = 224
    clips: int = 4
    width: int = 64
    epochs: int = 30
    batch_size: int = 8
    lr: float = 1e-4
    schedule: Schedule = "cosine"
    dropout: float = 0.5
    weight_decay: float = 1e-4
    label_treatment: LabelTreatment = "as_negative"
    unmarked_weight: float = 0.3
    bootstrap: int = 1000
    init: InitSource = "random"
    synthetic: SyntheticPretraining = field(default_factory=SyntheticPretraining)
    ssl: SSLPretraining = field(default_factory=SSLPretraining)
    weights: Path | None = None
    device: str = "auto"
    methods: tuple[str, ...] = tuple(METHODS)
    zoo_families: tuple[str, ...] = ZOO_FAMILIES
    zoo_seeds: tuple[int, ...] = SEEDS
    augment: ClipAugment = field(default_factory=ClipAugment)
    checkpoint_dir: Path | None = None
    workers: int = 2
    progress: bool = True
    bf16: bool = False

    def init_settings(self) -> SyntheticPretraining | SSLPretraining | None:
        """The pretraining ``init`` names; None for ``random``."""
        if self.init == "synthetic":
            return self.synthetic
        if self.init == "ssl":
            return self.ssl
        return None


@dataclass
class MethodRun:
    """One method on one task.

    Attributes:
        oof: ``(n_rows, n_classes)`` out-of-fold probabilities of internal rows (NaN elsewhere).
        fold_metrics_rows: Test rows of each fold (labelled for the task).
        external: Per fold, ``(n_external, n_classes)`` probabilities of the external rows.
        seconds: Per fold, training seconds charged to this method for this task.
        chosen: Per fold, what was picked (zoo family and seed, or the kept epoch).
        families: Zoo methods: per family, out-of-fold probabilities of that family's best
            seed on validation (every family's row, not only the winner's).
        source: Where a zoo method's fitting inputs came from (``eval_methods.SOURCES``).
    """

    oof: np.ndarray
    fold_rows: list[np.ndarray] = field(default_factory=list)
    external: list[np.ndarray] = field(default_factory=list)
    seconds: list[float] = field(default_factory=list)
    chosen: list[str] = field(default_factory=list)
    families: dict[str, np.ndarray] = field(default_factory=dict)
    source: str = ""


@dataclass
class EvalResult:
    """Everything the report needs."""

    config: EvalConfig
    tasks: list[TaskData]
    folds: list[Fold]
    n_internal: int
    patients: np.ndarray
    biomarker_keys: tuple[str, ...]
    biomarker_labels: np.ndarray
    oof_vectors: np.ndarray
    biomarker_seconds: list[float]
    runs: dict[tuple[str, str], MethodRun]
    total_seconds: float = 0.0
    external_vectors: np.ndarray | None = None
    """``(n_external, n_biomarkers)``: the fold models' vectors of the external rows, averaged."""
    init_seconds: float = 0.0
    """Seconds spent making the initialisation: synthetic pretraining once for all folds, or
    the sum of ``init_fold_seconds``."""
    init_fold_seconds: list[float] = field(default_factory=list)
    """Per fold, seconds of its own initialisation (``ssl``; empty otherwise)."""
    init_fold_videos: list[int] = field(default_factory=list)
    """Per fold, the videos its initialisation was pretrained on (``ssl``; empty otherwise)."""


@dataclass
class EvalData:
    """The decoded manifests: internal rows first, then external test rows."""

    rows: list[ManifestRow]
    n_internal: int
    videos: list[DecodedVideo]
    tasks: list[TaskData]
    external: np.ndarray
    patients: np.ndarray
    biomarkers: np.ndarray
