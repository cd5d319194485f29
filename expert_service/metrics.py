"""Prometheus metrics of one expert process: RPCs by method and status, experts held in memory."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Gauge

from expert_service.predictor import ExpertPredictor
from lus.rpc.metrics import RpcMetrics


class ExpertMetrics:
    """Collectors in a registry of their own (several servers may share a test process)."""

    def __init__(self, runner: ExpertPredictor) -> None:
        self.registry = CollectorRegistry()
        self.rpc = RpcMetrics("expert", self.registry)
        loaded = Gauge(
            "lus_expert_loaded_models",
            "Expert versions held in memory (bounded by LUS_EXPERT_MAX_LOADED)",
            registry=self.registry,
        )
        loaded.set_function(lambda: len(runner.loaded()))
