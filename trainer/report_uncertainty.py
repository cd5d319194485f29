"""Markdown sections of a report that say how sure its figures are (intervals, paired
differences in words, every zoo family, the external set, repeated runs)."""

from __future__ import annotations

import math
from typing import Any

from trainer.report_intervals import interval_text

METRIC_NAMES = {"auc": "AUC", "accuracy": "accuracy", "f1": "F1 (weighted)"}


def _f(value: float | None, digits: int = 2) -> str:
    return "n/a" if value is None or not math.isfinite(value) else f"{value:.{digits}f}"


def intervals_section(summary: dict[str, Any]) -> list[str]:
    """Every method's pooled out-of-fold AUC, accuracy and F1 with patient-level intervals."""
    lines = ["## Intervals (patient-level bootstrap, 95%)", ""]
    for task, data in summary["intervals"].items():
        lines += [
            f"**{task}** ({data['rows']} videos, {data['patients']} patients, "
            f"{data['resamples']} resamples of patients)",
            "",
            "| method | fit on | AUC | accuracy | F1 (weighted) |",
            "|---|---|---|---|---|",
        ]
        for method, m in data["methods"].items():
            source = summary["methods"][method]["tasks"][task].get("source") or "-"
            cells = [interval_text(m[k]) for k in ("auc", "accuracy", "f1")]
            lines.append(f"| {method} | {source} | " + " | ".join(cells) + " |")
        lines.append("")
    lines += [
        "Intervals resample patients (all of a patient's videos together), never videos; an "
        "interval whose bounds straddle a figure means the data cannot tell them apart.",
        "",
    ]
    return lines


def differences_section(summary: dict[str, Any]) -> list[str]:
    """Paired differences on the same patients, said in words: each biomarker-route variant
    minus each end-to-end baseline, then the embedding route minus each 38-d variant."""
    lines = ["## Biomarker route minus end to end (paired, same patients)", ""]
    routes = _difference_lines(summary, "differences", "route")
    lines += routes or ["No biomarker-route method and end-to-end baseline ran together."]
    embedding = _difference_lines(summary, "embedding_differences", "embedding")
    if embedding:
        lines += ["", "## Embedding route minus the 38-d route (paired, same patients)", ""]
        lines += embedding
    lines.append("")
    return lines


def _difference_lines(summary: dict[str, Any], key: str, subject: str) -> list[str]:
    lines = []
    for task, data in summary["intervals"].items():
        for d in data.get(key, []):
            parts = []
            for metric in ("auc", "accuracy", "f1"):
                noise = d["inside_noise"][metric]
                verdict = (
                    "inside the noise (interval covers 0)"
                    if noise
                    else f"{subject} {'better' if d[metric]['point'] > 0 else 'worse'}"
                    " beyond the noise"
                )
                parts.append(f"{METRIC_NAMES[metric]} {interval_text(d[metric])}: {verdict}")
            lines.append(f"- **{task}**, {d['route']} − {d['baseline']}: " + "; ".join(parts) + ".")
    return lines


def families_section(summary: dict[str, Any]) -> list[str]:
    """Each zoo family's row (its best seed on validation), as the paper's tables show."""
    lines = ["## Every zoo family (pooled out-of-fold AUC [95% interval] / accuracy)", ""]
    for task, data in summary["intervals"].items():
        if not data["families"]:
            continue
        families = sorted({f for rows in data["families"].values() for f in rows})
        lines += [
            f"**{task}**",
            "",
            "| method | " + " | ".join(families) + " |",
            "|---|" + "---|" * len(families),
        ]
        for method, rows in data["families"].items():
            cells = [
                f"{interval_text(rows[f]['auc'])} / {_f(rows[f]['accuracy'])}" if f in rows else "-"
                for f in families
            ]
            lines.append(f"| {method} | " + " | ".join(cells) + " |")
        lines.append("")
    return lines


def external_section(summary: dict[str, Any]) -> list[str]:
    """Per-biomarker AUC with intervals and per-class sensitivity/specificity, external set."""
    ext = summary.get("external")
    if not ext:
        return []
    lines = [f"## External set: biomarkers and classes ({ext['videos']} videos)", ""]
    if ext["biomarkers"]:
        lines += [
            "Biomarker vectors averaged over the fold models.",
            "",
            "| biomarker | positives / known | AUC [95% interval] |",
            "|---|---|---|",
        ]
        for b in ext["biomarkers"]:
            lines.append(
                f"| {b['key']} | {b['positives']} / {b['known']} | {interval_text(b['auc'])} |"
            )
        lines.append("")
    for task, methods in ext["tasks"].items():
        if not methods:
            continue
        classes = list(next(iter(methods.values()))["sensitivity"])
        head = ["method", "AUC", "accuracy"] + [f"{c} sens / spec (n)" for c in classes]
        lines += [f"**{task}** (fold models' probabilities averaged)", ""]
        lines += ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
        for method, m in methods.items():
            cells = [method, interval_text(m["intervals"]["auc"])]
            cells.append(interval_text(m["intervals"]["accuracy"]))
            cells += [
                f"{_f(m['sensitivity'][c])} / {_f(m['specificity'][c])} ({m['n_per_class'][c]})"
                for c in classes
            ]
            lines.append("| " + " | ".join(cells) + " |")
        lines.append("")
    return lines


def repeats_section(summary: dict[str, Any]) -> list[str]:
    """How much pooled figures move between runs with different seeds."""
    rep = summary.get("repeats")
    if not rep:
        return []
    seeds = ", ".join(str(s) for s in rep["seeds"])
    lines = [f"## Repeats ({rep['runs']} runs, seeds {seeds})", ""]
    tasks = list(next(iter(rep["methods"].values())))
    head = ["method"] + [f"{t} AUC mean ± std (min-max)" for t in tasks]
    lines += ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for method, per_task in rep["methods"].items():
        cells = [method] + [_spread(per_task[t]["auc"]) for t in tasks]
        lines.append("| " + " | ".join(cells) + " |")
    lines += ["", "| biomarker | pooled AUC mean ± std (min-max) |", "|---|---|"]
    for key, spread in rep["biomarkers"].items():
        lines.append(f"| {key} | {_spread(spread)} |")
    lines += [
        "",
        "The first run's figures fill the other tables; these rows show how far a rerun with "
        "another seed (folds, initialisation, batches, zoo) moves them.",
        "",
    ]
    return lines


def _spread(s: dict[str, float]) -> str:
    if not math.isfinite(s["mean"]):
        return "n/a"
    return f"{s['mean']:.2f} ± {s['std']:.2f} ({s['min']:.2f}-{s['max']:.2f})"
