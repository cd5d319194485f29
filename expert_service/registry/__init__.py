"""Expert registries: immutable ``(task, version)`` -> ONNX model + card stores."""

from expert_service.registry.base import ExpertRegistry
from expert_service.registry.local import LocalRegistry

__all__ = ["ExpertRegistry", "LocalRegistry"]
