"""Expert registries: immutable ``(task, version)`` -> ONNX model + card stores with aliases.

``RedisRegistry`` lives in ``expert_service.registry.redis_store`` and is imported only when a
Redis URL is configured, so the local store needs no ``redis`` package.
"""

from expert_service.registry.base import (
    ALIASES,
    PRODUCTION,
    STAGING,
    ExpertRegistry,
    RegistryState,
    TaskState,
)
from expert_service.registry.local import LocalRegistry

__all__ = [
    "ALIASES",
    "PRODUCTION",
    "STAGING",
    "ExpertRegistry",
    "LocalRegistry",
    "RegistryState",
    "TaskState",
]
