"""``lus eval``: argument parsing and the command body (plugged into ``lus_cli/cli.py``).

Importing this module is cheap (no torch, no scikit-learn); the work is imported on run.

Usage from the CLI module::

    from lus_cli.eval import add_eval_parser
    add_eval_parser(sub)          # sub = the top-level subparsers; sets func=run_eval
"""

from __future__ import annotations

import argparse
import hashlib
import os
import platform
import shlex
import sys
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING

from expert_service.training.catalog import ZOO_FAMILIES
from trainer.eval_methods import METHODS

if TYPE_CHECKING:
    from trainer.evaluation import EvalConfig


def add_eval_parser(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add the ``eval`` subcommand; its ``func`` default is ``run_eval``."""
    p = subparsers.add_parser(
        "eval",
        help="compare the biomarker route with end-to-end baselines on patient-level folds",
    )
    p.add_argument("--manifest", type=Path, required=True, help="training manifest CSV")
    p.add_argument("--tasks", required=True, help="comma-separated task columns, e.g. diagnosis")
    p.add_argument("--out", type=Path, required=True, help="report folder")
    p.add_argument("--test-manifest", type=Path, help="external test manifest (final figures)")
    p.add_argument("--schema", default="pocus-weak6", help="schema of the biomarker columns")
    p.add_argument("--folds", type=int, default=5, help="patient-level folds")
    p.add_argument("--val-fraction", type=float, default=0.2)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--frames", type=int, default=15, help="frames per clip (paper: 15)")
    p.add_argument("--size", type=int, default=224, help="frame size (paper: 224)")
    p.add_argument("--clips", type=int, default=4, help="clips averaged at inference (paper: 4)")
    p.add_argument("--width", type=int, default=64, help="first-stage channels (64 = ResNet-18)")
    p.add_argument("--epochs", type=int, default=30)
    p.add_argument("--batch-size", type=int, default=8)
    p.add_argument("--lr", type=float, default=1e-4, help="AdamW learning rate (paper: 1e-4)")
    p.add_argument(
        "--schedule",
        choices=["cosine", "plateau"],
        default="cosine",
        help="cosine: last epoch kept; plateau: the paper's ReduceLROnPlateau on validation AUC",
    )
    p.add_argument("--dropout", type=float, default=0.5, help="dropout before every head")
    p.add_argument("--weight-decay", type=float, default=1e-4, help="AdamW weight decay")
    p.add_argument(
        "--label-treatment",
        choices=["as_negative", "mask", "down_weight", "likely_negatives"],
        default="as_negative",
        help="what a biomarker 0 the schema calls 'unmarked' is trained as",
    )
    p.add_argument(
        "--unmarked-weight", type=float, default=0.3, help="weight of unmarked 0s (down_weight)"
    )
    p.add_argument(
        "--bootstrap", type=int, default=1000, help="patient resamples behind every interval"
    )
    p.add_argument(
        "--init",
        choices=["random", "synthetic", "ssl"],
        default="random",
        help="synthetic: start every TSM model from one pretrained on generated loops; ssl: "
        "per fold, from one pretrained self-supervised (SimCLR) on that fold's training videos",
    )
    p.add_argument("--synthetic-videos", type=int, default=400, help="loops to pretrain on")
    p.add_argument("--synthetic-epochs", type=int, default=10, help="pretraining epochs")
    p.add_argument(
        "--synthetic-style",
        choices=["v1", "v2"],
        default="v1",
        help="generator style for synthetic pretraining (v2: closer to real clips)",
    )
    p.add_argument("--ssl-epochs", type=int, default=20, help="self-supervised epochs per fold")
    p.add_argument("--ssl-batch-size", type=int, default=16, help="videos per self-supervised step")
    p.add_argument(
        "--ssl-temperature", type=float, default=0.2, help="NT-Xent temperature (--init ssl)"
    )
    p.add_argument("--ssl-lr", type=float, default=1e-3, help="self-supervised learning rate")
    p.add_argument(
        "--freeze",
        default="",
        help="stages of the biomarker model kept fixed after pretraining (synthetic or ssl), "
        "e.g. stem,layer1",
    )
    p.add_argument(
        "--repeats", type=int, default=1, help="runs with seeds seed..seed+N-1; report the spread"
    )
    p.add_argument("--weights", type=Path, help="local torchvision resnet18 weights (ImageNet)")
    p.add_argument("--device", default="auto", help="auto (GPU when present), cpu, cuda")
    p.add_argument(
        "--bf16", action="store_true", help="train under bf16 autocast on CUDA (ignored on CPU)"
    )
    p.add_argument(
        "--methods",
        default=",".join(METHODS),
        help=f"comma-separated subset of {', '.join(METHODS)}",
    )
    p.add_argument("--zoo-families", default=",".join(ZOO_FAMILIES))
    p.add_argument("--zoo-seeds", type=int, default=3, help="seeds per zoo family")
    p.add_argument("--no-augment", action="store_true", help="train without augmentations")
    p.add_argument("--checkpoints", type=Path, help="folder of resumable per-run checkpoints")
    p.add_argument("--note", default="", help="free text added to the report header")
    p.set_defaults(func=run_eval)


def sha256_of(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def machine_description(device: str) -> str:
    """CPU model, cores and the device used, for the report header."""
    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    import torch

    gpu = torch.cuda.get_device_name(0) if torch.cuda.is_available() else "no GPU"
    return (
        f"{cpu}, {os.cpu_count()} cores, torch {torch.__version__} "
        f"(threads: {torch.get_num_threads()}), {gpu}; device {device}"
    )


def config_from_args(args: argparse.Namespace) -> EvalConfig:
    """The evaluation settings named by the parsed arguments."""
    # Imported here so building the CLI parser never loads torch or scikit-learn.
    from trainer.augment import ClipAugment
    from trainer.evaluation import EvalConfig
    from trainer.pretrain import SyntheticPretraining
    from trainer.ssl_pretrain import SSLPretraining

    freeze = tuple(s.strip() for s in args.freeze.split(",") if s.strip())
    return EvalConfig(
        manifest=args.manifest,
        tasks=tuple(t.strip() for t in args.tasks.split(",") if t.strip()),
        test_manifest=args.test_manifest,
        schema=args.schema,
        folds=args.folds,
        val_fraction=args.val_fraction,
        seed=args.seed,
        frames=args.frames,
        size=args.size,
        clips=args.clips,
        width=args.width,
        epochs=args.epochs,
        batch_size=args.batch_size,
        lr=args.lr,
        schedule=args.schedule,
        dropout=args.dropout,
        weight_decay=args.weight_decay,
        label_treatment=args.label_treatment,
        unmarked_weight=args.unmarked_weight,
        bootstrap=args.bootstrap,
        init=args.init,
        synthetic=SyntheticPretraining(
            videos=args.synthetic_videos,
            epochs=args.synthetic_epochs,
            style=args.synthetic_style,
            seed=args.seed,
            freeze=freeze,
        ),
        ssl=SSLPretraining(
            epochs=args.ssl_epochs,
            batch_size=args.ssl_batch_size,
            temperature=args.ssl_temperature,
            lr=args.ssl_lr,
            seed=args.seed,
            freeze=freeze,
        ),
        weights=args.weights,
        device=args.device,
        methods=tuple(m.strip() for m in args.methods.split(",") if m.strip()),
        zoo_families=tuple(f.strip() for f in args.zoo_families.split(",") if f.strip()),
        zoo_seeds=tuple(range(args.zoo_seeds)),
        augment=ClipAugment.none() if args.no_augment else ClipAugment(),
        checkpoint_dir=args.checkpoints,
        bf16=args.bf16,
    )


def run_eval(args: argparse.Namespace) -> int:
    """Run the evaluation (``--repeats`` times) and write the report; print where it went."""
    from dataclasses import replace

    from trainer.evaluation import run_evaluation
    from trainer.report import summarize, write_report
    from trainer.report_intervals import repeat_spread

    cfg = config_from_args(args)
    meta = {
        "command": getattr(args, "command_line", None) or shlex.join(["lus", *sys.argv[1:]]),
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
        "machine": machine_description(cfg.device),
        "data": f"{cfg.manifest} (sha256 {sha256_of(cfg.manifest)})",
    }
    if cfg.test_manifest is not None:
        meta["test data"] = f"{cfg.test_manifest} (sha256 {sha256_of(cfg.test_manifest)})"
    if args.note:
        meta["note"] = args.note
    if args.repeats < 1:
        raise SystemExit("--repeats must be at least 1")
    result = run_evaluation(cfg)
    summary = summarize(result)
    repeats = None
    if args.repeats > 1:
        summaries, seconds = [summary], result.total_seconds
        for i in range(1, args.repeats):
            # Each repeat gets its own checkpoints: the fingerprints hold the seed anyway.
            folder = None if cfg.checkpoint_dir is None else cfg.checkpoint_dir / f"repeat{i}"
            again = run_evaluation(replace(cfg, seed=cfg.seed + i, checkpoint_dir=folder))
            summaries.append(summarize(again))
            seconds += again.total_seconds
        repeats = repeat_spread(summaries)
        meta["repeats"] = f"{args.repeats} runs, {seconds / 60:.1f} min in all"
    path = write_report(result, args.out, meta, repeats=repeats, summary=summary)
    print(f"wrote {path} ({result.total_seconds / 60:.1f} min)")
    return 0


def main(argv: list[str] | None = None) -> int:
    """``python -m lus_cli.eval --manifest ...``: the same command without the ``lus`` CLI."""
    parser = argparse.ArgumentParser(prog="python -m lus_cli.eval")
    add_eval_parser(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(["eval", *(sys.argv[1:] if argv is None else argv)])
    args.command_line = shlex.join(["python", "-m", "lus_cli.eval", *sys.argv[1:]])
    return run_eval(args)


if __name__ == "__main__":
    sys.exit(main())
