"""The transport-free core of the expert tier: validate a biomarker vector, run its expert."""

from __future__ import annotations

import logging
import threading
from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass
from functools import cache

import numpy as np

from expert_service.artifact import ExpertCard
from expert_service.errors import CorruptArtifact
from expert_service.model import OnnxExpert
from expert_service.registry.base import ExpertRegistry
from lus.errors import InvalidInput, LusError, SchemaMismatch
from lus.schema import builtin_schema_names, load_schema

logger = logging.getLogger(__name__)

_MAX_POSITIONS_NAMED = 5
"""Error messages name this many bad positions, then say how many more there are."""


@dataclass(frozen=True)
class Prediction:
    """An expert's answer for one vector.

    Attributes:
        task: The task asked.
        version: The version that answered (never 0).
        label: The most probable class.
        probabilities: ``(class, probability)`` pairs in the expert's class order.
        notice: The expert's use restriction, to show with the answer.
    """

    task: str
    version: int
    label: str
    probabilities: tuple[tuple[str, float], ...]
    notice: str

    def as_dict(self) -> dict[str, float]:
        """Probabilities keyed by class."""
        return dict(self.probabilities)


@dataclass(frozen=True)
class TaskInfo:
    """One version's card plus every version of its task, oldest first."""

    card: ExpertCard
    versions: tuple[int, ...]


@cache
def _schema_keys(schema_id: str) -> tuple[str, ...] | None:
    # Lets error messages name biomarkers ("b_lines.some") when the schema is a shipped one.
    for name in builtin_schema_names():
        schema = load_schema(name)
        if schema.schema_id == schema_id:
            return schema.keys
    return None


def _positions(schema_id: str, positions: np.ndarray) -> str:
    keys = _schema_keys(schema_id)
    named = [f"{i} ({keys[i]})" if keys else str(i) for i in positions[:_MAX_POSITIONS_NAMED]]
    more = len(positions) - len(named)
    return ", ".join(named) + (f" and {more} more" if more else "")


def check_vector(card: ExpertCard, schema_id: str, values: Sequence[float]) -> np.ndarray:
    """Return ``values`` as a float32 row if ``card``'s expert can take them.

    Raises:
        InvalidInput: No schema id, wrong length, or values that are not finite or not in [0, 1].
        SchemaMismatch: The vector was made with another biomarker schema.
    """
    expert = f"expert {card.task} v{card.version}"
    if not schema_id:
        raise InvalidInput(f"vector has no schema_id; {expert} expects {card.schema_id}")
    if schema_id != card.schema_id:
        raise SchemaMismatch(
            f"vector made with schema {schema_id}; {expert} expects {card.schema_id}"
        )
    try:
        row = np.asarray(values, dtype=np.float64)
    except (TypeError, ValueError):
        raise InvalidInput("vector values must be numbers") from None
    if row.ndim != 1 or row.size != card.n_features:
        raise InvalidInput(
            f"vector has {row.size} values; schema {card.schema_id} has {card.n_features}"
        )
    if not np.all(np.isfinite(row)):
        bad = np.flatnonzero(~np.isfinite(row))
        where = _positions(schema_id, bad)
        raise InvalidInput(f"vector values at positions {where} are NaN or Inf")
    if np.any((row < 0.0) | (row > 1.0)):
        bad = np.flatnonzero((row < 0.0) | (row > 1.0))
        raise InvalidInput(
            f"vector values at positions {_positions(schema_id, bad)} are outside [0, 1]; "
            "biomarker vectors hold probabilities"
        )
    return row.astype(np.float32)[np.newaxis, :]


class ExpertRunner:
    """Answers ``predict`` from a registry, keeping recently used experts loaded.

    Thread-safe: the gRPC servicer calls it from worker threads.

    Args:
        registry: Where experts are stored.
        max_loaded: How many ``(task, version)`` sessions stay in memory (least recently used
            ones are dropped first).
    """

    def __init__(self, registry: ExpertRegistry, *, max_loaded: int = 32) -> None:
        self.registry = registry
        self.max_loaded = max_loaded
        self._loaded: OrderedDict[tuple[str, int], tuple[ExpertCard, OnnxExpert]] = OrderedDict()
        self._lock = threading.Lock()

    def predict(
        self, task: str, version: int, schema_id: str, values: Sequence[float]
    ) -> Prediction:
        """Run the expert ``task`` v``version`` (0 = newest) on one biomarker vector.

        Raises:
            NotFound: Unknown task or version (the message lists the known ones).
            SchemaMismatch: The vector's schema is not the expert's.
            InvalidInput: Bad task name, wrong length, or values not finite / not in [0, 1].
        """
        card, expert = self._expert(task, version)
        row = check_vector(card, schema_id, values)
        probabilities = expert.predict_proba(row)[0]
        return Prediction(
            task=card.task,
            version=card.version,
            label=card.classes[int(np.argmax(probabilities))],
            probabilities=tuple(zip(card.classes, map(float, probabilities), strict=True)),
            notice=card.notice,
        )

    def list_tasks(self) -> list[ExpertCard]:
        """The newest card of every task, sorted by task."""
        return [self.registry.card(task) for task in self.registry.tasks()]

    def task_card(self, task: str, version: int = 0) -> TaskInfo:
        """The card of ``task`` v``version`` (0 = newest) and the task's versions."""
        card = self.registry.card(task, version)
        return TaskInfo(card=card, versions=tuple(self.registry.versions(task)))

    def warm_up(self) -> list[tuple[str, int]]:
        """Load the newest version of every task; return those loaded, log those that fail."""
        loaded = []
        for task in self.registry.tasks():
            try:
                card, _ = self._expert(task, 0)
            except LusError as err:
                logger.error("expert %s not loaded: %s", task, err)
                continue
            loaded.append((card.task, card.version))
        return loaded

    def _expert(self, task: str, version: int) -> tuple[ExpertCard, OnnxExpert]:
        if version == 0:
            # Resolve "newest" on every call: versions may be registered while serving.
            version = (self.registry.versions(task) or [0])[-1]
        key = (task, version)
        with self._lock:
            if key in self._loaded:
                self._loaded.move_to_end(key)
                return self._loaded[key]
        card, onnx_bytes = self.registry.get(task, version)  # NotFound lists tasks / versions
        try:
            expert = OnnxExpert(onnx_bytes, n_features=card.n_features, classes=card.classes)
        except InvalidInput as err:
            # Stored bytes passed this check at registration; failing now is not the caller's fault.
            raise CorruptArtifact(f"expert {task} v{card.version} cannot be loaded") from err
        logger.info("loaded expert %s v%d", card.task, card.version)
        with self._lock:
            self._loaded[(card.task, card.version)] = (card, expert)
            while len(self._loaded) > self.max_loaded:
                self._loaded.popitem(last=False)
        return card, expert
