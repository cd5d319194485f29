"""Write an evaluation as a report shaped like the paper's Table 1: Markdown, CSV, JSON, plots.

Rows are methods; columns are each task's ROC AUC and accuracy (mean +- std over folds, and
pooled out-of-fold, since a small fold can miss a class) and training time.
"""

from __future__ import annotations

import csv
import json
import math
from pathlib import Path
from typing import Any

import numpy as np

from trainer.biomarker_training import init_description
from trainer.eval_methods import ROUTE_VARIANTS
from trainer.evaluation import METHODS, EvalResult, MethodRun
from trainer.label_treatment import describe
from trainer.metrics import classification_metrics, mean_std, per_biomarker_auc
from trainer.report_intervals import biomarker_intervals, external_figures, task_intervals
from trainer.report_markdown import render_markdown

SHARED_BIOMARKER_TIME = frozenset({"biomarker_experts", *ROUTE_VARIANTS, "end_to_end_pretrained"})
"""Methods whose per-task time includes the biomarker model, which is trained once for all tasks."""


def _fmt(value: float, digits: int = 3) -> str:
    return "n/a" if not math.isfinite(value) else f"{value:.{digits}f}"


def method_task_metrics(result: EvalResult, run: MethodRun, task_index: int) -> dict[str, Any]:
    """Per-fold, mean +- std, pooled out-of-fold and (when present) external-set metrics."""
    task = result.tasks[task_index]
    labels = list(task.labels)
    folds = [
        classification_metrics(task.y[rows], run.oof[rows], labels)
        for rows in run.fold_rows
        if len(rows)
    ]
    scored = np.concatenate(run.fold_rows) if run.fold_rows else np.zeros(0, dtype=np.int64)
    out: dict[str, Any] = {
        "folds": folds,
        "mean_std": mean_std(folds),
        "pooled": classification_metrics(task.y[scored], run.oof[scored], labels),
        "n_scored": len(scored),
        "chosen": run.chosen,
        "source": run.source,
    }
    external = np.arange(result.n_internal, len(task.y))
    external = external[task.y[external] != ""]
    if run.external and len(external):
        offset = external - result.n_internal
        per_model = [
            classification_metrics(task.y[external], proba[offset], labels)
            for proba in run.external
        ]
        averaged = np.mean([proba[offset] for proba in run.external], axis=0)
        out["external_mean_std"] = mean_std(per_model)
        out["external_ensemble"] = classification_metrics(task.y[external], averaged, labels)
    return out


def training_seconds(result: EvalResult, method: str) -> tuple[float, float]:
    """(all tasks, one added task): mean training seconds per fold.

    The biomarker model is charged once for all tasks; "one added task" is what a new task costs
    once the shared model exists (for the end-to-end baseline, a whole model).
    """
    per_task = [np.mean(result.runs[(method, t.name)].seconds) for t in result.tasks]
    bio = float(np.mean(result.biomarker_seconds)) if result.biomarker_seconds else 0.0
    shared = bio if method in SHARED_BIOMARKER_TIME else 0.0
    total = float(np.sum(per_task)) - shared * (len(per_task) - 1)
    return total, float(np.mean(per_task)) - shared


def summarize(result: EvalResult) -> dict[str, Any]:
    """All figures as plain data (the JSON written next to the report)."""
    methods = [m for m in METHODS if any((m, t.name) in result.runs for t in result.tasks)]
    table: dict[str, Any] = {}
    for method in methods:
        total, added = training_seconds(result, method)
        table[method] = {
            "description": METHODS[method],
            "train_seconds_all_tasks": total,
            "train_seconds_added_task": added,
            "tasks": {
                t.name: method_task_metrics(result, result.runs[(method, t.name)], i)
                for i, t in enumerate(result.tasks)
            },
        }
    internal = np.arange(result.n_internal)
    labels = result.biomarker_labels[internal]
    pooled = per_biomarker_auc(labels, result.oof_vectors)
    per_fold = np.array(
        [per_biomarker_auc(labels[f.test], result.oof_vectors[f.test]) for f in result.folds]
    )
    cfg = result.config
    intervals = biomarker_intervals(
        labels, result.oof_vectors, result.patients[internal], cfg.bootstrap, cfg.seed
    )
    return {
        "seed": cfg.seed,
        "protocol": {
            "schedule": cfg.schedule,
            "dropout": cfg.dropout,
            "weight_decay": cfg.weight_decay,
            "label_treatment": describe(cfg.label_treatment, cfg.unmarked_weight),
            "bootstrap_resamples": cfg.bootstrap,
            "init": init_description(cfg.weights, cfg.init_settings()),
            "init_seconds": result.init_seconds,
            "init_fold_seconds": result.init_fold_seconds,
            "init_fold_videos": result.init_fold_videos,
        },
        "intervals": {t.name: task_intervals(result, i) for i, t in enumerate(result.tasks)},
        "external": external_figures(result),
        "methods": table,
        "biomarkers": [
            {
                "key": key,
                "positives": int(np.nansum(labels[:, j])),
                "known": int(np.isfinite(labels[:, j]).sum()),
                "auc_pooled": float(pooled[j]),
                "auc_fold_mean": _nanmean(per_fold[:, j]),
                "auc_fold_std": _nanstd(per_fold[:, j]),
                "auc_interval": intervals[j],
            }
            for j, key in enumerate(result.biomarker_keys)
        ],
        "biomarker_seconds_per_fold": result.biomarker_seconds,
        "total_seconds": result.total_seconds,
        "tasks": {
            t.name: {
                "labels": list(t.labels),
                "videos": int((t.y[internal] != "").sum()),
                "patients": len(set(result.patients[internal][t.y[internal] != ""].tolist())),
            }
            for t in result.tasks
        },
        "folds": [
            {
                "train": len(f.train),
                "val": len(f.val),
                "test": len(f.test),
                "test_patients": len(set(result.patients[f.test].tolist())),
            }
            for f in result.folds
        ],
    }


def _nanmean(values: np.ndarray) -> float:
    finite = values[np.isfinite(values)]
    return float(finite.mean()) if len(finite) else math.nan


def _nanstd(values: np.ndarray) -> float:
    finite = values[np.isfinite(values)]
    return float(finite.std()) if len(finite) else math.nan


def write_report(
    result: EvalResult,
    out_dir: Path,
    meta: dict[str, str],
    *,
    repeats: dict[str, Any] | None = None,
    summary: dict[str, Any] | None = None,
) -> Path:
    """Write ``report.md``, ``table1.csv``, ``per_class.csv``, ``biomarker_auc.csv``,
    ``results.json`` and ``plots/*.png`` into ``out_dir``; return the Markdown path.

    Args:
        result: The evaluation (the first run when repeated).
        out_dir: Folder to write (created).
        meta: Provenance lines for the header: command, machine, date, data identity, notes.
        repeats: ``report_intervals.repeat_spread`` of repeated runs, when there were any.
        summary: ``summarize(result)`` when already computed.
    """
    out_dir.mkdir(parents=True, exist_ok=True)
    summary = dict(summary or summarize(result))
    summary["meta"] = meta
    if repeats is not None:
        summary["repeats"] = repeats
    (out_dir / "results.json").write_text(json.dumps(_jsonable(summary), indent=2) + "\n")
    _table_csv(result, summary, out_dir / "table1.csv")
    _per_class_csv(result, summary, out_dir / "per_class.csv")
    _biomarker_csv(summary, out_dir / "biomarker_auc.csv")
    plots = _plots(result, summary, out_dir / "plots")
    path = out_dir / "report.md"
    path.write_text(render_markdown(result, summary, meta, plots))
    return path


def _jsonable(value: Any) -> Any:
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_jsonable(v) for v in value]
    if isinstance(value, float | np.floating):
        return float(value) if math.isfinite(value) else None
    if isinstance(value, np.integer):
        return int(value)
    return value


def _table_csv(result: EvalResult, summary: dict[str, Any], path: Path) -> None:
    header = ["method", "description"]
    for t in result.tasks:
        for name in (
            "auc_mean",
            "auc_std",
            "acc_mean",
            "acc_std",
            "auc_pooled",
            "acc_pooled",
            "f1_pooled",
            "precision_pooled",
            "auc_low",
            "auc_high",
            "acc_low",
            "acc_high",
            "f1_low",
            "f1_high",
        ):
            header.append(f"{t.name}_{name}")
    header += ["train_minutes_all_tasks", "train_seconds_added_task"]
    with path.open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(header)
        for method, row in summary["methods"].items():
            cells = [method, row["description"]]
            for t in result.tasks:
                m = row["tasks"][t.name]
                auc, acc = m["mean_std"]["roc_auc_ovo_weighted"], m["mean_std"]["accuracy"]
                pooled = m["pooled"]
                cells += [_fmt(auc[0]), _fmt(auc[1]), _fmt(acc[0]), _fmt(acc[1])]
                cells += [
                    _fmt(pooled[k])
                    for k in (
                        "roc_auc_ovo_weighted",
                        "accuracy",
                        "f1_weighted",
                        "precision_weighted",
                    )
                ]
                bounds = summary["intervals"][t.name]["methods"].get(method, {})
                for metric in ("auc", "accuracy", "f1"):
                    ci = bounds.get(metric, {"low": math.nan, "high": math.nan})
                    cells += [_fmt(ci["low"]), _fmt(ci["high"])]
            cells += [
                _fmt(row["train_seconds_all_tasks"] / 60, 2),
                _fmt(row["train_seconds_added_task"], 1),
            ]
            writer.writerow(cells)


def _per_class_csv(result: EvalResult, summary: dict[str, Any], path: Path) -> None:
    with path.open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["method", "task", "class", "n", "sensitivity", "specificity"])
        for method, row in summary["methods"].items():
            for t in result.tasks:
                pooled = row["tasks"][t.name]["pooled"]
                for i, cls in enumerate(t.labels):
                    n = int(np.sum(pooled["confusion"][i]))
                    writer.writerow(
                        [
                            method,
                            t.name,
                            cls,
                            n,
                            _fmt(pooled["sensitivity"][cls]),
                            _fmt(pooled["specificity"][cls]),
                        ]
                    )


def _biomarker_csv(summary: dict[str, Any], path: Path) -> None:
    with path.open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(
            [
                "biomarker",
                "positives",
                "known",
                "auc_pooled",
                "auc_low",
                "auc_high",
                "auc_fold_mean",
                "auc_fold_std",
            ]
        )
        for b in summary["biomarkers"]:
            writer.writerow(
                [
                    b["key"],
                    b["positives"],
                    b["known"],
                    _fmt(b["auc_pooled"]),
                    _fmt(b["auc_interval"]["low"]),
                    _fmt(b["auc_interval"]["high"]),
                    _fmt(b["auc_fold_mean"]),
                    _fmt(b["auc_fold_std"]),
                ]
            )


def _plots(result: EvalResult, summary: dict[str, Any], folder: Path) -> list[Path]:
    import matplotlib

    matplotlib.use("Agg")  # files only; no display on servers
    import matplotlib.pyplot as plt

    folder.mkdir(parents=True, exist_ok=True)
    written = []
    methods = list(summary["methods"])
    for t in result.tasks:
        fig, axes = plt.subplots(1, len(methods), figsize=(3.2 * len(methods), 3.4), squeeze=False)
        for ax, method in zip(axes[0], methods, strict=True):
            cm = np.array(summary["methods"][method]["tasks"][t.name]["pooled"]["confusion"])
            ax.imshow(cm, cmap="Blues")
            for (i, j), v in np.ndenumerate(cm):
                ax.text(j, i, str(v), ha="center", va="center", fontsize=8)
            ax.set_xticks(range(len(t.labels)), t.labels, rotation=45, ha="right", fontsize=7)
            ax.set_yticks(range(len(t.labels)), t.labels, fontsize=7)
            ax.set_title(method, fontsize=8)
            ax.set_xlabel("predicted", fontsize=7)
        axes[0][0].set_ylabel("true", fontsize=7)
        fig.suptitle(f"{t.name}: pooled out-of-fold confusion matrices", fontsize=9)
        fig.tight_layout()
        path = folder / f"confusion_{t.name}.png"
        fig.savefig(path, dpi=110)
        plt.close(fig)
        written.append(path)
    fig, ax = plt.subplots(figsize=(max(4.0, 0.5 * len(summary["biomarkers"]) + 2), 3.2))
    keys = [b["key"] for b in summary["biomarkers"]]
    values = [
        b["auc_pooled"] if math.isfinite(b["auc_pooled"]) else 0.0 for b in summary["biomarkers"]
    ]
    ax.bar(range(len(keys)), values, color="tab:blue")
    ax.axhline(0.5, color="gray", linestyle="--", linewidth=1)
    ax.set_xticks(range(len(keys)), keys, rotation=60, ha="right", fontsize=7)
    ax.set_ylim(0, 1)
    ax.set_ylabel("ROC AUC (pooled out-of-fold)")
    fig.tight_layout()
    path = folder / "biomarker_auc.png"
    fig.savefig(path, dpi=110)
    plt.close(fig)
    written.append(path)
    return written
