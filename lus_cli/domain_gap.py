"""``lus domain-gap``: how well a simple classifier tells real clips from generated ones.

    lus domain-gap --manifest ../shared/data/pocus/manifest.csv --synthetic-videos 90 \\
        --style v2 --out domain-gap-v2

Generates ``--synthetic-videos`` loops in a temporary folder (or reads ``--synthetic-manifest``),
runs :func:`trainer.domain_gap.domain_gap` and writes ``domain_gap.json`` and ``domain_gap.md``
to ``--out``. Importing this module is cheap; the work is imported on run.
"""

from __future__ import annotations

import argparse
import json
import shlex
import sys
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from trainer.domain_gap import DomainGap

TOP_FEATURES = 10
STYLE_CHOICES = ("v1", "v2")
"""``lus.synthetic.style.STYLE_VERSIONS``, spelt out so that parsing imports no generator."""


def add_domain_gap_parser(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add the ``domain-gap`` subcommand; ``run_domain_gap`` runs it."""
    p = subparsers.add_parser(
        "domain-gap",
        help="real-vs-synthetic domain classifier AUC (lower: generator closer to real clips)",
        description="Tell real clips from generated ones with simple image features and "
        "grouped cross-validation; reports the out-of-fold AUC with a group-bootstrap 95%% "
        "interval and the features that separate the domains most. Not for clinical use.",
    )
    p.add_argument("--manifest", type=Path, required=True, help="real clips (video, patient_id)")
    p.add_argument("--out", type=Path, required=True, help="report folder")
    p.add_argument("--synthetic-videos", type=int, default=90, help="loops to generate")
    p.add_argument(
        "--style", choices=STYLE_CHOICES, help="generator style version (default: the current)"
    )
    p.add_argument("--seed", type=int, default=0, help="generator, folds and bootstrap seed")
    p.add_argument(
        "--synthetic-manifest", type=Path, help="use these generated clips instead of generating"
    )
    p.add_argument("--synthetic-size", type=int, default=128, help="generated frame side (px)")
    p.add_argument("--synthetic-frames", type=int, default=24, help="frames per generated loop")
    p.add_argument("--limit", type=int, help="use only the first N real clips")
    p.add_argument("--frames-per-video", type=int, default=6, help="frames sampled per clip")
    p.add_argument("--size", type=int, default=96, help="side the frames are reduced to (px)")
    p.add_argument("--folds", type=int, default=5)
    p.add_argument("--bootstrap", type=int, default=1000, help="group resamples (0: none)")


def command_line(args: argparse.Namespace) -> str:
    """The command that reproduces this run, every option spelt out."""
    parts = ["lus", "domain-gap", "--manifest", str(args.manifest)]
    if args.synthetic_manifest:
        parts += ["--synthetic-manifest", str(args.synthetic_manifest)]
    else:
        parts += ["--synthetic-videos", str(args.synthetic_videos), "--style", args.style]
        parts += ["--synthetic-size", str(args.synthetic_size)]
        parts += ["--synthetic-frames", str(args.synthetic_frames)]
    if args.limit is not None:
        parts += ["--limit", str(args.limit)]
    parts += ["--seed", str(args.seed), "--frames-per-video", str(args.frames_per_video)]
    parts += ["--size", str(args.size), "--folds", str(args.folds)]
    parts += ["--bootstrap", str(args.bootstrap), "--out", str(args.out)]
    return shlex.join(parts)


def render_markdown(gap: DomainGap, *, command: str, style: str) -> str:
    """The report: headline AUCs, counts, the most separating features, the command."""
    from lus.provenance import RESEARCH_DATA_NOTICE, SYNTHETIC_DATA_NOTICE

    lines = [
        "# Domain gap: real vs synthetic clips",
        "",
        f"**{RESEARCH_DATA_NOTICE}** {SYNTHETIC_DATA_NOTICE}",
        "",
        f"Generator style: `{style}`. Real clips: {gap.n_real} ({gap.real_groups} patient "
        f"groups); synthetic clips: {gap.n_synthetic} ({gap.synthetic_groups} generated "
        f"patients); {gap.folds} grouped folds.",
        "",
        "Pooled out-of-fold ROC AUC of a classifier telling synthetic from real clips, with a "
        "95% interval from a bootstrap over patient groups. 0.5: indistinguishable; 1.0: always "
        "told apart. Lower is better.",
        "",
        "| classifier | domain AUC [95% interval] |",
        "|---|---|",
        *[f"| {name} | {interval.text()} |" for name, interval in gap.auc.items()],
        "",
        "## Features that separate the domains most",
        "",
        "Each feature alone as the score (AUC above 0.5: higher in synthetic clips).",
        "",
        "| feature | AUC | real median | synthetic median |",
        "|---|---|---|---|",
        *[
            f"| {f.name} | {f.auc:.2f} | {f.real_median:.3g} | {f.synthetic_median:.3g} |"
            for f in gap.features[:TOP_FEATURES]
        ],
        "",
        "## Command",
        "",
        f"    {command}",
        "",
    ]
    return "\n".join(lines)


def _synthetic_manifest(args: argparse.Namespace, workdir: Path) -> Path:
    if args.synthetic_manifest:
        return Path(args.synthetic_manifest)
    from lus.synthetic import generate_dataset

    return generate_dataset(
        workdir,
        n_videos=args.synthetic_videos,
        seed=args.seed,
        frames=args.synthetic_frames,
        height=args.synthetic_size,
        width=args.synthetic_size,
        style_version=args.style,
    )


def _style_of(manifest: Path) -> str:
    """The style version recorded next to a generated manifest, if any."""
    record = manifest.parent / "generator.json"
    if record.is_file():
        return str(json.loads(record.read_text(encoding="utf-8")).get("style_version", "unknown"))
    return "unknown (no generator.json)"


def run_domain_gap(args: argparse.Namespace) -> int:
    """Measure, print the AUCs, write the JSON and Markdown reports; 2 on bad input."""
    from lus.synthetic.style import DEFAULT_STYLE_VERSION
    from trainer.domain_gap import domain_gap, headline, manifest_features

    if args.style is None:
        args.style = DEFAULT_STYLE_VERSION
    reduce = {"frames_per_video": args.frames_per_video, "size": args.size}
    try:
        real = manifest_features(args.manifest, limit=args.limit, desc="real clips", **reduce)
        with tempfile.TemporaryDirectory() as tmp:
            manifest = _synthetic_manifest(args, Path(tmp))
            style = _style_of(manifest)
            synthetic = manifest_features(manifest, desc="synthetic clips", **reduce)
        gap = domain_gap(
            real, synthetic, folds=args.folds, seed=args.seed, bootstrap=args.bootstrap
        )
    except (ValueError, OSError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    command = command_line(args)
    args.out.mkdir(parents=True, exist_ok=True)
    from lus.provenance import RESEARCH_DATA_NOTICE, SYNTHETIC_DATA_NOTICE

    record = {
        "notice": f"{RESEARCH_DATA_NOTICE} {SYNTHETIC_DATA_NOTICE}",
        "command": command,
        "style_version": style,
        **gap.as_dict(),
    }
    (args.out / "domain_gap.json").write_text(json.dumps(record, indent=2) + "\n")
    markdown = render_markdown(gap, command=command, style=style)
    (args.out / "domain_gap.md").write_text(markdown, encoding="utf-8")
    for name, interval in gap.auc.items():
        print(f"domain AUC ({name}): {interval.text()}")
    print(
        f"headline {headline(gap).text()} for style {style} (lower is better); "
        f"wrote {args.out / 'domain_gap.md'} (NOT FOR CLINICAL USE)"
    )
    return 0
