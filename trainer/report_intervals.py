"""The report's uncertainty: patient-level bootstrap intervals, paired differences, repeats.

Everything here is plain data for ``results.json`` and ``trainer.report_markdown``.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np

from trainer.bootstrap import Interval, PatientBootstrap, accuracy, inside_the_noise
from trainer.eval_methods import END_TO_END, ZOO_METHODS
from trainer.eval_types import EvalResult
from trainer.metrics import classification_metrics

ROUTES = (
    "biomarker_experts",
    "biomarker_experts_std",
    "biomarker_experts_own",
    "biomarker_experts_per_clip",
    "embedding_experts",
)
"""The biomarker-route variants, each compared with every end-to-end baseline."""

EMBEDDING = "embedding_experts"
"""Also compared with each 38-d variant: the choice teams would make between the two."""


def task_intervals(result: EvalResult, task_index: int) -> dict[str, Any]:
    """Per method: AUC, accuracy, F1 with intervals; every zoo family's row; paired differences.

    All on the task's labelled internal rows, pooled out of fold, with one set of patient
    resamples shared by every method (so differences are paired).
    """
    cfg, task = result.config, result.tasks[task_index]
    rows = task.labelled(np.arange(result.n_internal))
    boot = PatientBootstrap(result.patients[rows], n=cfg.bootstrap, seed=cfg.seed)
    y = task.index(rows)
    methods: dict[str, Any] = {}
    families: dict[str, Any] = {}
    oof: dict[str, np.ndarray] = {}
    for (method, name), run in result.runs.items():
        if name != task.name or not np.isfinite(run.oof[rows]).all():
            continue
        oof[method] = run.oof[rows]
        methods[method] = {k: v.as_dict() for k, v in boot.task_intervals(y, oof[method]).items()}
        if method in ZOO_METHODS and run.families:
            families[method] = {
                family: _family_row(boot, y, proba[rows]) for family, proba in run.families.items()
            }
    pairs = [(r, b) for r in ROUTES if r in oof for b in END_TO_END if b in oof]
    # Issue 15 item 6: does the embedding beat the 38 interpretable numbers? Same patients.
    against_vectors = [
        (EMBEDDING, r) for r in ROUTES if r != EMBEDDING and {r, EMBEDDING} <= set(oof)
    ]
    return {
        "rows": len(rows),
        "patients": len(set(result.patients[rows].tolist())),
        "resamples": cfg.bootstrap,
        "methods": methods,
        "families": families,
        "differences": [_paired(boot, y, oof, a, b) for a, b in pairs],
        "embedding_differences": [_paired(boot, y, oof, a, b) for a, b in against_vectors],
    }


def _paired(
    boot: PatientBootstrap, y: np.ndarray, oof: dict[str, np.ndarray], route: str, baseline: str
) -> dict[str, Any]:
    """``route`` minus ``baseline`` on the same patient resamples, with the verdict per metric."""
    diff = boot.paired_difference(y, oof[route], oof[baseline])
    return {
        "route": route,
        "baseline": baseline,
        **{k: v.as_dict() for k, v in diff.items()},
        "inside_noise": {k: inside_the_noise(v) for k, v in diff.items()},
    }


def _family_row(boot: PatientBootstrap, y: np.ndarray, proba: np.ndarray) -> dict[str, Any]:
    # The AUC's interval only: families are many, and the AUC is what the paper ranks them by.
    return {
        "auc": boot.metric_interval("auc", y, proba).as_dict(),
        "accuracy": accuracy(y, proba),
    }


def biomarker_intervals(
    labels: np.ndarray, scores: np.ndarray, patients: np.ndarray, n: int, seed: int
) -> list[dict[str, float]]:
    """Per biomarker: pooled ROC AUC with its patient-level interval."""
    boot = PatientBootstrap(patients, n=n, seed=seed)
    return [i.as_dict() for i in boot.biomarker_intervals(labels, scores)]


def external_figures(result: EvalResult) -> dict[str, Any] | None:
    """The external set: per-biomarker AUC of the fold models' averaged vectors (intervals over
    external patients) and, per task, the ensemble's per-class sensitivity and specificity."""
    external = np.arange(result.n_internal, len(result.patients))
    if not len(external):
        return None
    cfg = result.config
    out: dict[str, Any] = {"videos": len(external), "biomarkers": [], "tasks": {}}
    if result.external_vectors is not None:
        labels = result.biomarker_labels[external]
        intervals = biomarker_intervals(
            labels, result.external_vectors, result.patients[external], cfg.bootstrap, cfg.seed
        )
        for j, key in enumerate(result.biomarker_keys):
            known = np.isfinite(labels[:, j])
            out["biomarkers"].append(
                {
                    "key": key,
                    "positives": int(np.nansum(labels[:, j])),
                    "known": int(known.sum()),
                    "auc": intervals[j],
                }
            )
    for task in result.tasks:
        rows = external[task.y[external] != ""]
        if not len(rows):
            continue
        boot = PatientBootstrap(result.patients[rows], n=cfg.bootstrap, seed=cfg.seed)
        per_method: dict[str, Any] = {}
        for (method, name), run in result.runs.items():
            if name != task.name or not run.external:
                continue
            averaged = np.mean([p[rows - result.n_internal] for p in run.external], axis=0)
            metrics = classification_metrics(task.y[rows], averaged, task.labels)
            per_method[method] = {
                "intervals": {
                    k: v.as_dict()
                    for k, v in boot.task_intervals(task.index(rows), averaged).items()
                },
                "sensitivity": metrics["sensitivity"],
                "specificity": metrics["specificity"],
                "n_per_class": {
                    c: int(np.sum(metrics["confusion"][i])) for i, c in enumerate(task.labels)
                },
            }
        out["tasks"][task.name] = per_method
    return out


def repeat_spread(summaries: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """Across repeated runs (different seeds): mean, std, min and max of each pooled AUC and
    accuracy per method and task, and of each biomarker's pooled AUC."""
    methods: dict[str, Any] = {}
    for method in summaries[0]["methods"]:
        methods[method] = {}
        for task in summaries[0]["methods"][method]["tasks"]:
            pooled = [s["methods"][method]["tasks"][task]["pooled"] for s in summaries]
            methods[method][task] = {
                "auc": _spread([p["roc_auc_ovo_weighted"] for p in pooled]),
                "accuracy": _spread([p["accuracy"] for p in pooled]),
            }
    biomarkers = {
        b["key"]: _spread([s["biomarkers"][j]["auc_pooled"] for s in summaries])
        for j, b in enumerate(summaries[0]["biomarkers"])
    }
    seeds = [s.get("seed") for s in summaries]
    return {"runs": len(summaries), "seeds": seeds, "methods": methods, "biomarkers": biomarkers}


def _spread(values: Sequence[float]) -> dict[str, float]:
    v = np.array([x for x in values if x is not None and math.isfinite(x)], dtype=np.float64)
    if not len(v):
        return {"mean": math.nan, "std": math.nan, "min": math.nan, "max": math.nan}
    return {
        "mean": float(v.mean()),
        "std": float(v.std()),
        "min": float(v.min()),
        "max": float(v.max()),
    }


def interval_text(data: dict[str, float] | None, digits: int = 2) -> str:
    """``0.61 [0.48, 0.74]`` from an ``Interval.as_dict``."""
    if data is None:
        return "n/a"
    return Interval(data["point"], data["low"], data["high"], int(data["n"])).text(digits)


__all__ = [
    "ROUTES",
    "biomarker_intervals",
    "external_figures",
    "interval_text",
    "repeat_spread",
    "task_intervals",
]
