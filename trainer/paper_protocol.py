"""The paper's full protocol on a CUDA device: the expected time first, then ``lus eval``.

The paper's settings are ``EvalConfig``'s defaults (TSM ResNet-18 of width 64, 15 frames of
224 px, 4 clips averaged, AdamW at 1e-4, 30 epochs, batch 8); this adds bf16 autocast, keeps
checkpoints under ``--out`` (a rerun, e.g. of the Kubernetes Job, resumes every finished and
interrupted run) and runs ``python -m lus_cli.eval`` in a child process, so the evaluation
is the command's own parsing and code (``trainer`` may not import ``lus_cli``).

Before it starts, a few real training steps of the paper-size model (``trainer.fit.fit_tsm``,
bf16) and a few inference batches are timed on the device, and the expected total is printed:
steps per epoch x epochs, summed over every TSM model of every fold, plus inference. Decoding
the videos (once, at the start) and the CPU expert-zoo phase are not in it.

Usage::

    python -m trainer.paper_protocol --manifest M --out DIR [--folds 5] [--weights F]
        [--dry-run] [--allow-cpu]
"""

from __future__ import annotations

import argparse
import math
import shlex
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from biomarker_service.model import TSMResNet
from lus.errors import InvalidInput
from lus.schema import load_schema
from lus.video import DecodedVideo, InputSpec
from trainer.eval_types import EvalConfig
from trainer.fit import FitConfig, fit_tsm, predict_videos
from trainer.folds import patient_folds
from trainer.manifest import ManifestRow, read_manifest

PAPER_TASKS = ("diagnosis", "severity")
"""The paper's two tasks on the POCUS clips."""


@dataclass(frozen=True)
class TrainingRun:
    """One TSM model the evaluation trains: which, on which fold, on how many videos."""

    name: str
    fold: int
    train_videos: int
    val_videos: int


@dataclass(frozen=True)
class StepTimes:
    """Measured on the device: one training step (``batch_size`` clips) and one video scored."""

    train_step: float
    video: float


@dataclass(frozen=True)
class Estimate:
    """Training steps and inference videos of a whole evaluation, and their expected seconds."""

    runs: int
    steps: int
    videos_scored: int
    seconds: float


def paper_config(
    manifest: Path,
    out: Path,
    *,
    tasks: tuple[str, ...] = PAPER_TASKS,
    folds: int = 5,
    weights: Path | None = None,
    device: str = "cuda",
) -> EvalConfig:
    """``EvalConfig``'s defaults (the paper's) with bf16 on CUDA and checkpoints under ``out``."""
    return EvalConfig(
        manifest=manifest,
        tasks=tasks,
        folds=folds,
        weights=weights,
        device=device,
        bf16=device == "cuda",  # autocast is CUDA-only (trainer.fit); say so in the command
        checkpoint_dir=out / "checkpoints",
        progress=False,
    )


def eval_argv(cfg: EvalConfig, report: Path) -> list[str]:
    """``lus eval`` arguments naming every paper setting explicitly, so the report shows them."""
    argv = [
        *("--manifest", str(cfg.manifest), "--tasks", ",".join(cfg.tasks)),
        *("--out", str(report), "--folds", str(cfg.folds), "--seed", str(cfg.seed)),
        *("--frames", str(cfg.frames), "--size", str(cfg.size), "--clips", str(cfg.clips)),
        *("--width", str(cfg.width), "--epochs", str(cfg.epochs)),
        *("--batch-size", str(cfg.batch_size), "--lr", f"{cfg.lr:g}"),
        *("--schedule", cfg.schedule, "--device", cfg.device),
    ]
    if cfg.bf16:
        argv.append("--bf16")
    if cfg.weights is not None:
        argv += ["--weights", str(cfg.weights)]
    if cfg.checkpoint_dir is not None:
        argv += ["--checkpoints", str(cfg.checkpoint_dir)]
    return argv


def planned_runs(cfg: EvalConfig, rows: list[ManifestRow]) -> list[TrainingRun]:
    """Every TSM model ``lus eval`` trains on ``rows``, on the folds it will draw.

    Per fold: the biomarker model; per task, the plain end-to-end model (also behind
    ``transfer_features``) and the one started from the biomarker model, as
    ``trainer.eval_runner.FoldRunner.deep_phase`` trains them.
    """
    for task in cfg.tasks:
        if task not in rows[0].tasks:
            known = ", ".join(rows[0].tasks)
            raise InvalidInput(f"{cfg.manifest} has no task column {task!r}; it has {known}")
    patients = np.array([r.patient_id for r in rows])
    labels = {t: np.array([r.tasks[t].strip() for r in rows]) for t in cfg.tasks}
    folds = patient_folds(
        patients, labels[cfg.tasks[0]], k=cfg.folds, val_fraction=cfg.val_fraction, seed=cfg.seed
    )
    methods = set(cfg.methods)
    runs = []
    for fold in folds:
        runs.append(TrainingRun("biomarkers", fold.index, len(fold.train), len(fold.val)))
        for task, y in labels.items():
            n_train, n_val = int((y[fold.train] != "").sum()), int((y[fold.val] != "").sum())
            if {"end_to_end", "transfer_features"} & methods:
                runs.append(TrainingRun(f"end_to_end-{task}", fold.index, n_train, n_val))
            if "end_to_end_pretrained" in methods:
                runs.append(
                    TrainingRun(f"end_to_end_pretrained-{task}", fold.index, n_train, n_val)
                )
    return runs


def estimate(
    runs: list[TrainingRun], *, epochs: int, batch_size: int, n_videos: int, times: StepTimes
) -> Estimate:
    """Steps x seconds per step, plus videos scored x seconds per video.

    A run scores its validation videos after every epoch and, at the end, at most every video
    of the manifest once (test rows, features or embeddings).
    """
    steps = sum(epochs * math.ceil(r.train_videos / batch_size) for r in runs)
    videos = sum(epochs * r.val_videos + n_videos for r in runs)
    seconds = steps * times.train_step + videos * times.video
    return Estimate(len(runs), steps, videos, seconds)


def measure(cfg: EvalConfig, device: torch.device, n_outputs: int, steps: int = 5) -> StepTimes:
    """Time ``steps`` real training steps and a few inference batches of the paper-size model.

    The clips come from a random 60-frame video at the configured size (decoded videos are
    kept resized, so sampling and augmenting cost what they cost in the real loop). A first,
    untimed step pays for CUDA's lazy start-up and the allocator's warm-up.
    """
    spec = InputSpec(frames_per_clip=cfg.frames, size=cfg.size, clips=cfg.clips)
    rng = np.random.default_rng(0)
    frames = rng.integers(0, 256, (60, cfg.size, cfg.size), dtype=np.uint8)
    videos = [DecodedVideo(frames=frames, fps=30.0)] * (steps * cfg.batch_size)
    targets = rng.integers(0, 2, (len(videos), n_outputs)).astype(np.float32)
    model = TSMResNet(num_outputs=n_outputs, spec=spec, width=cfg.width).to(device)
    fit = FitConfig(
        epochs=1,
        batch_size=cfg.batch_size,
        lr=cfg.lr,
        augment=cfg.augment,
        dropout=cfg.dropout,
        weight_decay=cfg.weight_decay,
        progress=False,
        desc="timing",
        bf16=cfg.bf16,
    )
    head = cfg.batch_size
    fit_tsm(model, device, (videos[:head], targets[:head]), None, objective="multilabel", cfg=fit)
    train_step = _timed(
        device,
        lambda: fit_tsm(model, device, (videos, targets), None, objective="multilabel", cfg=fit),
    )
    predict_videos(model, videos[:head], device)
    video = _timed(device, lambda: predict_videos(model, videos[: 2 * head], device))
    return StepTimes(train_step / steps, video / (2 * head))


def _timed(device: torch.device, work: Callable[[], object]) -> float:
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    started = time.perf_counter()
    work()
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    return time.perf_counter() - started


def describe(runs: list[TrainingRun], cfg: EvalConfig, times: StepTimes, plan: Estimate) -> str:
    """The estimate in words, with the arithmetic behind it."""
    per_fold = len(runs) // max(1, cfg.folds)
    hours = plan.seconds / 3600
    return (
        f"{cfg.folds} folds x {per_fold} TSM models per fold = {plan.runs} runs of {cfg.epochs}"
        f" epochs: {plan.steps} training steps x {times.train_step:.3f} s"
        f" (batch {cfg.batch_size}, {cfg.frames} x {cfg.size} px, width {cfg.width},"
        f" bf16 {'on' if cfg.bf16 else 'off'})"
        f" + {plan.videos_scored} videos scored x {times.video:.3f} s ({cfg.clips} clips)\n"
        f"expected: {plan.seconds / 60:.0f} min ({hours:.1f} h), not counting decoding the"
        " videos once and the expert-zoo phase on the CPU"
    )


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m trainer.paper_protocol", description=__doc__)
    p.add_argument("--manifest", type=Path, required=True, help="training manifest CSV")
    p.add_argument("--out", type=Path, required=True, help="folder: report/ and checkpoints/")
    p.add_argument("--folds", type=int, default=5, help="patient-level folds (3 or 5)")
    p.add_argument("--tasks", default=",".join(PAPER_TASKS))
    p.add_argument("--weights", type=Path, help="local torchvision resnet18 weights (ImageNet)")
    p.add_argument("--dry-run", action="store_true", help="print the estimate and command only")
    p.add_argument("--allow-cpu", action="store_true", help="run without CUDA (days, not hours)")
    p.add_argument("--timing-steps", type=int, default=5, help="training steps timed")
    p.add_argument(
        "--step-seconds",
        type=float,
        help="seconds per training step, measured elsewhere (skips timing; needs --video-seconds)",
    )
    p.add_argument("--video-seconds", type=float, help="seconds per video scored")
    return p


def main(argv: list[str] | None = None) -> int:
    """Check the device, print the estimate and the command, then run it (unless a dry run)."""
    args = build_parser().parse_args(argv)
    cuda = torch.cuda.is_available()
    if not cuda and not args.allow_cpu:
        print(
            "paper_protocol: no CUDA device is visible (torch.cuda.is_available() is False);"
            " the paper-size protocol takes days on a CPU. Run it on a GPU node"
            " (deploy/k8s/jobs/paper-protocol.yaml) or pass --allow-cpu.",
            file=sys.stderr,
        )
        return 2
    if (args.step_seconds is None) != (args.video_seconds is None):
        print("paper_protocol: give both --step-seconds and --video-seconds", file=sys.stderr)
        return 2
    tasks = tuple(t.strip() for t in args.tasks.split(",") if t.strip())
    cfg = paper_config(
        args.manifest,
        args.out,
        tasks=tasks,
        folds=args.folds,
        weights=args.weights,
        device="cuda" if cuda else "cpu",
    )
    try:
        rows = read_manifest(cfg.manifest, load_schema(cfg.schema))
        runs = planned_runs(cfg, rows)
    except (InvalidInput, OSError) as error:
        print(f"paper_protocol: {error}", file=sys.stderr)
        return 2
    if args.step_seconds is not None:
        times = StepTimes(args.step_seconds, args.video_seconds)
    else:
        n_outputs = len(load_schema(cfg.schema).keys)
        times = measure(cfg, torch.device(cfg.device), n_outputs, steps=args.timing_steps)
        if cuda:
            torch.cuda.empty_cache()  # the evaluation runs in a child process
    plan = estimate(
        runs, epochs=cfg.epochs, batch_size=cfg.batch_size, n_videos=len(rows), times=times
    )
    print(describe(runs, cfg, times, plan), flush=True)
    assert cfg.checkpoint_dir is not None
    done = sorted(cfg.checkpoint_dir.glob("*.pt")) if cfg.checkpoint_dir.is_dir() else []
    if done:
        print(f"{len(done)} checkpoints in {cfg.checkpoint_dir}: those runs resume", flush=True)
    note = f"paper protocol (trainer.paper_protocol); expected {plan.seconds / 60:.0f} min"
    command = [sys.executable, "-m", "lus_cli.eval", *eval_argv(cfg, args.out / "report")]
    command += ["--note", note]
    print(shlex.join(command), flush=True)
    if args.dry_run:
        return 0
    return subprocess.run(command, check=False).returncode


if __name__ == "__main__":
    sys.exit(main())
