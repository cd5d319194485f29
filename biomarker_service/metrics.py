"""Prometheus metrics of the GPU tier: queue, batches, decode and model time, store hits.

RPC counts and latencies come from ``lus.rpc.metrics``; all collectors live in one
``CollectorRegistry`` per server, served on its own port (``LUS_BIOMARKER_METRICS_PORT``).
"""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

from biomarker_service.admission import ConcurrencyLimit, UploadBudget
from lus.errors import InvalidInput, Overloaded
from lus.rpc.metrics import RpcMetrics

SERVICE = "biomarker"
_SECONDS = (0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30)
_SIZES = (1, 2, 4, 8, 16, 32, 64, 128, 256, 512)

DECODE_FAILURE_REASONS = ("invalid", "too_large", "insufficient", "budget", "error")
"""Why an upload got no vector before the model: unreadable (``invalid``), over a size or
frame limit (``too_large``), readable but not enough for the model (``insufficient``), the
server's shared decode budget full right now (``budget``, retryable), anything else
(``error``). A fixed set: the label must never carry text from the request."""

_TOO_LARGE_MARKERS = ("more than the limit", "decode budget of")
"""Phrases of ``lus.video.limits`` refusals of a file that can never fit (InvalidInput)."""


def decode_failure_reason(err: BaseException) -> str:
    """The ``reason`` label of a decode failure: one of ``DECODE_FAILURE_REASONS``.

    Read from the error's type and the fixed wording of ``lus.video`` messages; the errors
    carry no machine-readable reason yet.
    """
    if isinstance(err, Overloaded):
        return "budget"
    if isinstance(err, InvalidInput):
        message = str(err)
        if message.startswith("insufficient input"):
            return "insufficient"
        if any(marker in message for marker in _TOO_LARGE_MARKERS):
            return "too_large"
        return "invalid"
    return "error"


class BiomarkerMetrics:
    """Every metric of one biomarker server.

    Figures of model work carry a ``model`` label (the served version): during an upgrade a
    server runs two models, each with its own queue and batches, and their costs and store
    hit rates are what an operator compares. ``lus_biomarker_queue_depth`` stays the pod's
    total, unlabelled, because the autoscaler scales pods on it.
    """

    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry if registry is not None else CollectorRegistry()
        r = self.registry
        self.rpc = RpcMetrics(SERVICE, r)
        self.queue = Gauge(
            "lus_biomarker_queue_depth", "Videos waiting for a batch, all models", registry=r
        )
        self.model_queue = Gauge(
            "lus_biomarker_model_queue_depth",
            "Videos waiting for a batch, by served model version",
            ["model"],
            registry=r,
        )
        self.batch_clips = Histogram(
            "lus_biomarker_batch_clips",
            "Clips per forward pass",
            ["model"],
            buckets=_SIZES,
            registry=r,
        )
        self.batch_videos = Histogram(
            "lus_biomarker_batch_videos",
            "Videos per forward pass",
            ["model"],
            buckets=_SIZES,
            registry=r,
        )
        self.model_seconds = Histogram(
            "lus_biomarker_model_seconds",
            "Model (accelerator) time per batch",
            ["backend", "model"],
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
            "Queued videos dropped before the model, by reason and served model version",
            ["reason", "model"],
            registry=r,
        )
        self.store = Counter(
            "lus_biomarker_feature_store",
            "Feature-store lookups, by result (hit, miss, error) and served model version",
            ["result", "model"],
            registry=r,
        )
        self.decode_failures = Counter(
            "lus_biomarker_decode_failures",
            "Uploads refused before the model, by reason (invalid, too_large, insufficient, "
            "budget, error)",
            ["reason"],
            registry=r,
        )
        for reason in DECODE_FAILURE_REASONS:
            self.decode_failures.labels(reason)  # zero from the start, so rate() sees the first
        self._depths: dict[str, int] = {}

    def watch_admission(self, uploads: UploadBudget, calls: ConcurrencyLimit) -> None:
        """Gauges of what the server admitted: upload bytes held and calls in progress (read
        when scraped), to size ``UPLOAD_BUDGET_BYTES`` and ``MAX_CONCURRENT_RPCS``."""
        Gauge(
            "lus_biomarker_upload_bytes_held",
            "Upload bytes held by calls in progress (LUS_BIOMARKER_UPLOAD_BUDGET_BYTES bounds it)",
            registry=self.registry,
        ).set_function(lambda: uploads.in_use_bytes)
        Gauge(
            "lus_biomarker_calls_in_progress",
            "BiomarkerService calls in progress (LUS_BIOMARKER_MAX_CONCURRENT_RPCS bounds it)",
            registry=self.registry,
        ).set_function(lambda: calls.in_progress)

    def for_model(self, version: str, backend: str) -> ModelMetrics:
        """The batcher's observer for one served model."""
        return ModelMetrics(self, version, backend)

    def count_decode_failure(self, err: BaseException) -> str:
        """Count one upload refused while decoding or checking it; returns the reason."""
        reason = decode_failure_reason(err)
        self.decode_failures.labels(reason).inc()
        return reason

    def count_store(self, result: str, model: str) -> None:
        self.store.labels(result, model).inc()

    def set_queue_depth(self, model: str, videos: int) -> None:
        """One model's queue; the unlabelled gauge gets the sum over every served model."""
        self._depths[model] = videos  # batchers report from the serving event loop only
        self.model_queue.labels(model).set(videos)
        self.queue.set(sum(self._depths.values()))


class ModelMetrics:
    """One served model's view of ``BiomarkerMetrics``: the ``BatchObserver`` of its batcher."""

    def __init__(self, metrics: BiomarkerMetrics, model: str, backend: str) -> None:
        self._metrics = metrics
        self.model = model
        self.backend = backend

    def queue_depth(self, videos: int) -> None:
        self._metrics.set_queue_depth(self.model, videos)

    def batch(self, *, videos: int, clips: int, seconds: float) -> None:
        m = self._metrics
        m.batch_videos.labels(self.model).observe(videos)
        m.batch_clips.labels(self.model).observe(clips)
        m.model_seconds.labels(self.backend, self.model).observe(seconds)

    def dropped(self, reason: str) -> None:
        self._metrics.dropped_total.labels(reason, self.model).inc()
