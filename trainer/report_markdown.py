"""The Markdown text of an evaluation report (figures come from ``trainer.report.summarize``)."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

from trainer.evaluation import EvalResult
from trainer.report_intervals import interval_text
from trainer.report_uncertainty import (
    differences_section,
    external_section,
    families_section,
    intervals_section,
    repeats_section,
)


def _f(value: float | None, digits: int = 3) -> str:
    return "n/a" if value is None or not math.isfinite(value) else f"{value:.{digits}f}"


def _pm(pair: tuple[float, float]) -> str:
    return "n/a" if not math.isfinite(pair[0]) else f"{pair[0]:.2f} ± {pair[1]:.2f}"


def _init_time(init: str, protocol: dict[str, Any]) -> str:
    """How long the initialisation took, for the model-size line."""
    if init == "synthetic":
        return f" ({protocol['init_seconds'] / 60:.1f} min, once for all folds)"
    if init == "ssl":
        per_fold = ", ".join(
            f"{s / 60:.1f} min on {n} videos"
            for s, n in zip(
                protocol["init_fold_seconds"], protocol["init_fold_videos"], strict=True
            )
        )
        return f" (per fold, no test or external rows: {per_fold})"
    return ""


def render_markdown(
    result: EvalResult, summary: dict[str, Any], meta: dict[str, str], plots: list[Path]
) -> str:
    """The report: provenance, Table 1, per-class figures, biomarker AUCs, what each fold chose."""
    cfg = result.config
    lines = ["# Evaluation: biomarker route vs end-to-end baselines", ""]
    lines += [f"- **{k}**: {v}" for k, v in meta.items()]
    lines += [
        f"- **folds**: {cfg.folds} patient-level folds (validation {cfg.val_fraction:.0%} of each "
        f"fold's training patients), seed {cfg.seed}",
        f"- **model size**: TSM ResNet-18 width {cfg.width}, {cfg.frames} frames x {cfg.size} px, "
        f"{cfg.clips} clips at inference, {cfg.epochs} epochs, batch {cfg.batch_size}, "
        f"lr {cfg.lr:g}, init: {summary['protocol']['init']}"
        + _init_time(cfg.init, summary["protocol"]),
        f"- **protocol**: AdamW (weight decay {cfg.weight_decay:g}), dropout {cfg.dropout:g} "
        f"before the head, {cfg.schedule} schedule "
        f"({'last epoch kept' if cfg.schedule == 'cosine' else 'best validation epoch kept'}), "
        f"biomarker 0s: {summary['protocol']['label_treatment']}",
        f"- **wall time**: {summary['total_seconds'] / 60:.1f} min",
        "",
        "## Tasks",
        "",
        "| task | classes | videos | patients |",
        "|---|---|---|---|",
    ]
    for name, t in summary["tasks"].items():
        lines.append(f"| {name} | {', '.join(t['labels'])} | {t['videos']} | {t['patients']} |")
    lines += ["", "## Table 1", ""]
    lines += _table1(result, summary)
    lines += ["", *intervals_section(summary)]
    lines += differences_section(summary)
    lines += repeats_section(summary)
    lines += families_section(summary)
    if any(
        "external_ensemble" in m
        for row in summary["methods"].values()
        for m in row["tasks"].values()
    ):
        lines += ["", "## External test set", ""]
        lines += _external(result, summary)
        lines += ["", *external_section(summary)]
    lines += ["", "## Per class (pooled out-of-fold)", ""]
    lines += _per_class(result, summary)
    lines += ["", "## Biomarker model: per-biomarker ROC AUC (out-of-fold)", ""]
    lines += [
        "| biomarker | positives / known | pooled AUC [95% interval] | fold mean ± std |",
        "|---|---|---|---|",
    ]
    for b in summary["biomarkers"]:
        lines.append(
            f"| {b['key']} | {b['positives']} / {b['known']} | "
            f"{interval_text(b['auc_interval'])} | "
            f"{_pm((b['auc_fold_mean'], b['auc_fold_std']))} |"
        )
    lines += ["", "## What each fold chose", ""]
    for method, row in summary["methods"].items():
        for task, m in row["tasks"].items():
            lines.append(f"- {method} / {task}: {'; '.join(m['chosen'])}")
    lines += ["", "## Plots", ""]
    lines += [f"![{p.stem}](plots/{p.name})" for p in plots]
    lines += ["", "Files: `table1.csv`, `per_class.csv`, `biomarker_auc.csv`, `results.json`.", ""]
    return "\n".join(lines)


def _table1(result: EvalResult, summary: dict[str, Any]) -> list[str]:
    head = ["method"]
    for t in result.tasks:
        head += [f"{t.name} AUC (folds)", f"{t.name} acc (folds)", f"{t.name} AUC / acc (pooled)"]
    head += ["train min (all tasks)", "added task (s)"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for method, row in summary["methods"].items():
        cells = [f"**{method}**"]
        for t in result.tasks:
            m = row["tasks"][t.name]
            pooled = m["pooled"]
            cells += [
                _pm(m["mean_std"]["roc_auc_ovo_weighted"]),
                _pm(m["mean_std"]["accuracy"]),
                f"{_f(pooled['roc_auc_ovo_weighted'], 2)} / {_f(pooled['accuracy'], 2)}",
            ]
        cells += [
            _f(row["train_seconds_all_tasks"] / 60, 2),
            _f(row["train_seconds_added_task"], 0),
        ]
        lines.append("| " + " | ".join(cells) + " |")
    lines += [
        "",
        "AUC: weighted one-vs-one ROC AUC over the task's full label list (binary AUC for two "
        "classes). Folds: mean ± std over the folds' test patients (a fold missing a class still "
        "counts when the AUC is defined). Pooled: all out-of-fold predictions scored together. "
        "Training time: mean per fold; the biomarker model is counted once for all tasks; "
        "'added task' is what one more task costs once that model exists.",
    ]
    lines += [
        "",
        "Methods: "
        + "; ".join(f"**{m}**: {row['description']}" for m, row in summary["methods"].items()),
    ]
    return lines


def _external(result: EvalResult, summary: dict[str, Any]) -> list[str]:
    lines = [
        "| method | task | AUC (fold models) | acc (fold models) | AUC / acc (ensemble) |",
        "|---|---|---|---|---|",
    ]
    for method, row in summary["methods"].items():
        for t in result.tasks:
            m = row["tasks"][t.name]
            if "external_ensemble" not in m:
                continue
            ens = m["external_ensemble"]
            lines.append(
                f"| {method} | {t.name} | {_pm(m['external_mean_std']['roc_auc_ovo_weighted'])} | "
                f"{_pm(m['external_mean_std']['accuracy'])} | "
                f"{_f(ens['roc_auc_ovo_weighted'], 2)} / {_f(ens['accuracy'], 2)} |"
            )
    return lines


def _per_class(result: EvalResult, summary: dict[str, Any]) -> list[str]:
    lines = []
    for t in result.tasks:
        head = ["method", "F1 (w)", "precision (w)"] + [f"{c} sens / spec" for c in t.labels]
        lines += [f"**{t.name}**", "", "| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
        for method, row in summary["methods"].items():
            pooled = row["tasks"][t.name]["pooled"]
            cells = [method, _f(pooled["f1_weighted"], 2), _f(pooled["precision_weighted"], 2)]
            cells += [
                f"{_f(pooled['sensitivity'][c], 2)} / {_f(pooled['specificity'][c], 2)}"
                for c in t.labels
            ]
            lines.append("| " + " | ".join(cells) + " |")
        lines.append("")
    return lines
