"""Prometheus metrics of the GPU tier: queue, batches, decode and model time, store hits.

RPC counts and latencies come from ``lus.rpc.metrics``; all collectors live in one
``CollectorRegistry`` per server, served on its own port (``LUS_BIOMARKER_METRICS_PORT``).
"""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

from lus.rpc.metrics import RpcMetrics

SERVICE = "biomarker"
_SECONDS = (0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30)
_SIZES = (1, 2, 4, 8, 16, 32, 64, 128, 256, 512)


class BiomarkerMetrics:
    """Every metric of one biomarker server; also the batcher's ``BatchObserver``."""

    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry if registry is not None else CollectorRegistry()
        r = self.registry
        self.rpc = RpcMetrics(SERVICE, r)
        self.queue = Gauge("lus_biomarker_queue_depth", "Videos waiting for a batch", registry=r)
        self.batch_clips = Histogram(
            "lus_biomarker_batch_clips", "Clips per forward pass", buckets=_SIZES, registry=r
        )
        self.batch_videos = Histogram(
            "lus_biomarker_batch_videos", "Videos per forward pass", buckets=_SIZES, registry=r
        )
        self.model_seconds = Histogram(
            "lus_biomarker_model_seconds",
            "Model (accelerator) time per batch",
            ["backend"],
            buckets=_SECONDS,
            registry=r,
        )
        self.decode_seconds = Histogram(
            "lus_biomarker_decode_seconds",
            "Decode + preprocess time per video (worker pool)",
            buckets=_SECONDS,
            registry=r,
        )
        self.dropped_total = Counter(
            "lus_biomarker_dropped",
            "Queued videos dropped before the model, by reason",
            ["reason"],
            registry=r,
        )
        self.store = Counter(
            "lus_biomarker_feature_store",
            "Feature-store lookups, by result (hit, miss, error)",
            ["result"],
            registry=r,
        )
        self.backend = "unknown"

    def queue_depth(self, videos: int) -> None:
        self.queue.set(videos)

    def batch(self, *, videos: int, clips: int, seconds: float) -> None:
        self.batch_videos.observe(videos)
        self.batch_clips.observe(clips)
        self.model_seconds.labels(self.backend).observe(seconds)

    def dropped(self, reason: str) -> None:
        self.dropped_total.labels(reason).inc()
