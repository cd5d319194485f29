"""The comparison's methods other than the biomarker route: end-to-end TSM models, majority.

Each end-to-end model is the same TSM ResNet-18 as the biomarker model with one output per
class of its task, trained with the same loop (``trainer.fit``), optionally started from a
biomarker model's weights (all but the head): the paper's "pretrain on biomarkers".
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch

from biomarker_service.model import TSMResNet
from lus.video import DecodedVideo, InputSpec
from trainer.fit import FitConfig, FitResult, fit_tsm, predict_videos


@dataclass(frozen=True)
class TaskData:
    """One task's labelled rows.

    Attributes:
        name: Task name, e.g. ``diagnosis``.
        labels: Every class in a fixed order (probability columns follow it).
        y: Label per manifest row; ``""`` where the row has none for this task.
    """

    name: str
    labels: tuple[str, ...]
    y: np.ndarray

    def labelled(self, rows: np.ndarray) -> np.ndarray:
        """The subset of ``rows`` that carry a label for this task."""
        kept: np.ndarray = rows[self.y[rows] != ""]
        return kept

    def index(self, rows: np.ndarray) -> np.ndarray:
        """Class indices of ``rows`` (all must be labelled)."""
        lookup = {label: i for i, label in enumerate(self.labels)}
        return np.array([lookup[v] for v in self.y[rows]], dtype=np.int64)


def train_end_to_end(
    task: TaskData,
    videos: Sequence[DecodedVideo],
    train_rows: np.ndarray,
    val_rows: np.ndarray,
    *,
    spec: InputSpec,
    width: int,
    fit: FitConfig,
    device: torch.device,
    init_from: TSMResNet | None = None,
) -> tuple[TSMResNet, FitResult]:
    """A TSM ResNet-18 trained directly on ``task`` (cross-entropy), best epoch by validation.

    Args:
        task: The task and its labels.
        videos: Every manifest video, indexed by row.
        train_rows: Rows to fit on (labelled ones are used).
        val_rows: Rows to pick the epoch on.
        spec: Clip shape.
        width: First-stage channels.
        fit: Loop settings.
        device: Where to compute.
        init_from: A biomarker model whose weights (all but the head) start the run.
    """
    model = TSMResNet(num_outputs=len(task.labels), spec=spec, width=width)
    if init_from is not None:
        own = model.state_dict()
        start = {
            k: v
            for k, v in init_from.state_dict().items()
            if not k.startswith("fc.") and k in own and own[k].shape == v.shape
        }
        model.load_state_dict(start, strict=False)
    model = model.to(device)
    train_rows, val_rows = task.labelled(train_rows), task.labelled(val_rows)
    train = ([videos[i] for i in train_rows], task.index(train_rows))
    val = ([videos[i] for i in val_rows], task.index(val_rows)) if len(val_rows) else None
    result = fit_tsm(model, device, train, val, objective="multiclass", cfg=fit)
    return model, result


def predict_task(
    model: TSMResNet, videos: Sequence[DecodedVideo], rows: np.ndarray, device: torch.device
) -> np.ndarray:
    """Softmax probabilities ``(len(rows), n_classes)``, multi-clip averaged."""
    return predict_videos(model, [videos[i] for i in rows], device, objective="multiclass")


def majority_proba(task: TaskData, train_rows: np.ndarray, n: int) -> np.ndarray:
    """``(n, n_classes)``: probability 1 on the most frequent training class (ties: first)."""
    counts = np.bincount(task.index(task.labelled(train_rows)), minlength=len(task.labels))
    proba = np.zeros((n, len(task.labels)))
    proba[:, int(np.argmax(counts))] = 1.0
    return proba
