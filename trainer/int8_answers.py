"""Expert answers under int8: the share of videos whose expert answer int8 vectors change.

A served probability may move a little and every biomarker's AUC stay put, yet an expert whose
decision boundary runs close to some videos answers differently for them: that is what a user
sees. Per task column, each expert family is fit on the fp32 vectors of some patients (grouped
k-fold, so every video is answered by experts that never saw its patient, as in serving) and
answers the held-out videos twice, from their fp32 and their int8 vectors; the answer is the
class of highest probability. Families, not one winner, because a tree or k-NN reacts to a
small shift where an SVM does not, and a team may register any of them. Experts a team already
has (ONNX files, as the expert tier serves them) answer every video from both vectors too.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import onnx
from sklearn.model_selection import GroupKFold

from expert_service.model import PROBABILITIES_OUTPUT, OnnxExpert
from expert_service.training.catalog import ZOO_FAMILIES
from lus.errors import InvalidInput
from trainer.zoo import fit_estimator, probabilities

ANSWER_FOLDS = 5
"""Patient-level folds of the fitting; fewer when the check has fewer patients."""

ALWAYS_TOLERATED = 1
"""Changed answers tolerated whatever the share: one video is a check's resolution, not evidence
(on 19 labelled videos one change is 5.3%; see ``within_tolerance``)."""

Answerer = Callable[[np.ndarray], np.ndarray]
"""An expert: vectors ``(n, n_biomarkers)`` -> class probabilities ``(n, n_classes)``."""


def load_onnx_expert(path: Path, n_features: int) -> Answerer:
    """An ONNX expert file (skl2onnx, ZipMap off) as an ``Answerer``, checked as the expert tier
    checks what it serves (``expert_service.model.OnnxExpert``; never unpickled).

    Raises:
        InvalidInput: Not such a model, or its probability output has no fixed class count.
    """
    data = path.read_bytes()
    try:
        graph = onnx.load_from_string(data).graph
    except Exception:  # protobuf raises several unrelated types on foreign bytes
        raise InvalidInput(f"{path}: not an ONNX model") from None
    outputs = sorted(graph.output, key=lambda o: o.name != PROBABILITIES_OUTPUT)
    for output in outputs:
        dims = output.type.tensor_type.shape.dim
        if output.type.tensor_type.elem_type == onnx.TensorProto.FLOAT and len(dims) == 2:
            n_classes = dims[1].dim_value
            if n_classes > 0:
                classes = [str(i) for i in range(n_classes)]
                return OnnxExpert(data, n_features=n_features, classes=classes).predict_proba
    raise InvalidInput(f"{path}: no float output of a fixed number of class probabilities")


def given_expert_changes(fp32: np.ndarray, int8: np.ndarray, expert: Answerer) -> dict[str, Any]:
    """How many videos an already-fit expert answers differently from fp32 and int8 vectors."""
    changed = int((expert(fp32).argmax(axis=1) != expert(int8).argmax(axis=1)).sum())
    return {"videos": len(fp32), "changed": changed, "share": changed / max(1, len(fp32))}


def changed_answers(
    fp32: np.ndarray,
    int8: np.ndarray,
    y: np.ndarray,
    patients: np.ndarray,
    *,
    families: Sequence[str] = ZOO_FAMILIES,
    seed: int = 0,
) -> dict[str, Any]:
    """Per family, how many labelled videos' answers differ between fp32 and int8 vectors.

    Args:
        fp32, int8: Served vectors of the same videos ``(n, n_biomarkers)``.
        y: The task's label per video; ``""`` = not labelled (left out).
        patients: Patient id per video.
        families: Expert families (``trainer.zoo``), each fit with ``seed``.
        seed: Seeds every expert.

    Returns:
        ``{"videos", "classes", "families": [{"family", "changed", "share"}], "max_share"}``
        (a family that cannot be fit on so few videos gets ``{"family", "skipped": reason}``
        instead, and no share), or ``{"skipped": reason}`` when the labels cannot train an
        expert.
    """
    rows = np.flatnonzero(y != "")
    classes = sorted(set(y[rows].tolist()))
    groups = patients[rows]
    n_patients = len(set(groups.tolist()))
    if len(classes) < 2 or n_patients < 2:
        return {"skipped": f"{len(classes)} classes on {n_patients} patients: no expert to fit"}
    splits = list(GroupKFold(n_splits=min(ANSWER_FOLDS, n_patients)).split(rows, groups=groups))
    per_family: list[dict[str, Any]] = []
    worst = 0.0
    for family in families:
        try:
            changed = sum(
                _changed(
                    family,
                    seed,
                    fit_x=fp32[rows[fit]],
                    fit_y=y[rows[fit]],
                    fp32=fp32[rows[held]],
                    int8=int8[rows[held]],
                )
                for fit, held in splits
            )
        except ValueError as error:  # e.g. k-NN's 5 neighbours on a fitting side of 4 videos
            per_family.append({"family": family, "skipped": str(error).splitlines()[0][:200]})
            continue
        share = changed / len(rows)
        per_family.append({"family": family, "changed": changed, "share": share})
        worst = max(worst, share)
    return {
        "videos": len(rows),
        "classes": len(classes),
        "families": per_family,
        "max_share": worst,
    }


def _changed(
    family: str,
    seed: int,
    *,
    fit_x: np.ndarray,
    fit_y: np.ndarray,
    fp32: np.ndarray,
    int8: np.ndarray,
) -> int:
    """Videos on which one expert, fit on ``fit_x``, answers ``fp32`` and ``int8`` differently."""
    labels = sorted(set(fit_y.tolist()))
    if len(labels) < 2:  # a fitting side of one class answers it whatever the vector: no change
        return 0
    model = fit_estimator(family, seed, fit_x, fit_y)
    a = probabilities(model, fp32, labels).argmax(axis=1)
    b = probabilities(model, int8, labels).argmax(axis=1)
    return int((a != b).sum())


def tolerated(videos: int, share: float) -> int:
    """Changed answers a check on ``videos`` tolerates at ``share``: ``share`` of them, rounded
    down, and never fewer than ``ALWAYS_TOLERATED``."""
    return max(ALWAYS_TOLERATED, math.floor(share * videos + 1e-9))


def within_tolerance(answers: dict[str, Any], share: float) -> bool:
    """Whether every task's families and every expert passed change at most ``tolerated``."""
    counted = [
        (task["videos"], family["changed"])
        for task in answers["tasks"].values()
        for family in task.get("families", [])
        if "changed" in family
    ]
    counted += [(e["videos"], e["changed"]) for e in answers["experts"].values()]
    return all(changed <= tolerated(videos, share) for videos, changed in counted)


def answers_record(
    fp32: np.ndarray,
    int8: np.ndarray,
    tasks: dict[str, np.ndarray],
    patients: np.ndarray,
    *,
    families: Sequence[str] = ZOO_FAMILIES,
    experts: Mapping[str, Answerer] | None = None,
) -> dict[str, Any]:
    """``changed_answers`` of every task column, ``given_expert_changes`` of every expert
    passed, and the worst share over all of them.

    ``max_share`` is None when nothing could be measured (no labelled task, no expert).
    """
    per_task = {
        name: changed_answers(fp32, int8, y, patients, families=families)
        for name, y in tasks.items()
    }
    given = {name: given_expert_changes(fp32, int8, e) for name, e in (experts or {}).items()}
    shares = [t["max_share"] for t in per_task.values() if "max_share" in t]
    shares += [e["share"] for e in given.values()]
    return {
        "method": "per task: each family (seed 0) fit on fp32 vectors of the other patients"
        f" (grouped {ANSWER_FOLDS}-fold); answer = class of highest probability, from the"
        " held-out videos' fp32 and int8 vectors",
        "tasks": per_task,
        "experts": given,
        "max_share": max(shares) if shares else None,
    }
