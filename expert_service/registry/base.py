"""The registry contract every store (local folder, Redis) implements."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Protocol, runtime_checkable

from expert_service.artifact import ExpertCard


@runtime_checkable
class ExpertRegistry(Protocol):
    """Stores experts by ``(task, version)``; a stored version never changes.

    Versions count up from 1 per task; ``version=0`` in a read means the newest one. Errors
    come from ``lus.errors``: ``InvalidInput`` (bad task name, bytes that are not a fitting ONNX
    model), ``NotFound`` (unknown task or version, naming the known ones), ``AlreadyExists``
    (the same model bytes are already a version of the task), and
    ``expert_service.errors.CorruptArtifact`` (stored bytes no longer match their sha256).
    """

    def register(
        self,
        task: str,
        onnx_bytes: bytes,
        *,
        schema_id: str,
        classes: Sequence[str],
        n_features: int,
        model_family: str,
        metrics: Mapping[str, float] | None = None,
        owner: str = "",
        description: str = "",
        training_data: str = "",
        notice: str = "",
    ) -> ExpertCard:
        """Validate the model, store it as the task's next version and return its card."""
        ...

    def get(self, task: str, version: int = 0) -> tuple[ExpertCard, bytes]:
        """The card and ONNX bytes of a version (0 = newest), verified against the sha256."""
        ...

    def card(self, task: str, version: int = 0) -> ExpertCard:
        """The card of a version (0 = newest) without reading the model."""
        ...

    def versions(self, task: str) -> list[int]:
        """The task's versions, oldest first; empty for an unknown task."""
        ...

    def tasks(self) -> list[str]:
        """Every task with at least one version, sorted."""
        ...
