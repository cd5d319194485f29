"""Prometheus metrics of one expert process: RPCs, experts in memory, registry health, answers
out of distribution and TrainExpert fits.

Every collector lives in this process's own ``CollectorRegistry`` (several servers may share a
test process; worker processes serve theirs on ports of their own). The reference table of
names, types and labels is in docs/operations.md.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING

from prometheus_client import CollectorRegistry, Counter, Gauge

from expert_service.predictor import ExpertPredictor
from expert_service.registry.epoch import RegistryDegraded
from expert_service.registry.signing import SignaturePolicy
from lus.rpc.metrics import RpcMetrics

if TYPE_CHECKING:
    from expert_service.training.jobs import Progress
    from expert_service.training.service import Fitter
    from expert_service.training.worker import FitOutcome, FitRequest

SERVICE = "expert"
ADMIN_SERVICE = "expert_admin"
"""The admin port's ``service`` label: its calls (registry writes, training) are counted apart
from predictions, so a burst of admin errors is not read as the data plane failing."""


class ExpertMetrics:
    """Collectors in a registry of their own, and the hooks that feed them.

    Args:
        runner: Whose loaded experts to count.
        clock: Monotonic seconds; tests pass a fake one to read sync ages without sleeping.
    """

    def __init__(
        self, runner: ExpertPredictor, *, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self.registry = CollectorRegistry()
        r = self.registry
        self.rpc = RpcMetrics(SERVICE, r)
        self.admin_rpc = self.rpc.for_service(ADMIN_SERVICE)
        self._clock = clock
        self._lock = threading.Lock()
        # Until a first sync, the age counts from start: a replica that never reached its
        # registry must look stale to an alert, not fresh (a NaN would never fire).
        self._last_sync = clock()
        loaded = Gauge(
            "lus_expert_loaded_models",
            "Expert versions held in memory (bounded by LUS_EXPERT_MAX_LOADED)",
            registry=r,
        )
        loaded.set_function(lambda: len(runner.loaded()))
        self.registry_connected = Gauge(
            "lus_expert_registry_connected",
            "1 when the last registry read succeeded, 0 while it fails or before the first one",
            registry=r,
        )
        sync_age = Gauge(
            "lus_expert_registry_last_sync_age_seconds",
            "Seconds since the last successful registry read (since start when none yet)",
            registry=r,
        )
        sync_age.set_function(self.last_sync_age_s)
        self.resyncs = Counter(
            "lus_expert_registry_resyncs",
            "Registry reads that found a new revision and rebuilt the routes",
            registry=r,
        )
        self.reload_failures = Counter(
            "lus_expert_registry_reload_failures",
            "Failed registry reads of the hot-reload loop, by exception type",
            ["error"],
            registry=r,
        )
        # Registry durability and signatures (docs/operations.md, Registry durability).
        self.registry_degraded = Gauge(
            "lus_expert_registry_degraded",
            "1 while the registry's Redis is emptied or holds another registry (epoch mismatch): "
            "loaded experts keep answering, writes are refused until `lus registry restore`",
            registry=r,
        )
        self.refused_records = Counter(
            "lus_expert_registry_refused_records",
            "Registry reads refused for a missing or bad signature, by reason",
            ["reason"],
            registry=r,
        )
        for reason in ("unsigned", "bad_signature"):
            self.refused_records.labels(reason)
        self.answers = Counter(
            "lus_expert_answers",
            "Vectors answered, by task and whether out of the expert's training distribution",
            ["task", "ood"],
            registry=r,
        )
        self.fits_running = Gauge(
            "lus_expert_training_fits_running",
            "TrainExpert fits running on this replica now",
            registry=r,
        )
        self.fits = Counter(
            "lus_expert_training_fits",
            "TrainExpert fits finished, by result (succeeded, failed)",
            ["result"],
            registry=r,
        )
        for result in ("succeeded", "failed"):
            self.fits.labels(result)  # zero from the start, so rate() sees the first one

    def last_sync_age_s(self) -> float:
        """Seconds since the last successful registry read; computed when scraped, so it grows
        while the registry is away even though nothing else updates it."""
        with self._lock:
            return max(0.0, self._clock() - self._last_sync)

    def sync_succeeded(self, *, changed: bool) -> None:
        """A registry read succeeded; ``changed``: it found a new revision and rebuilt routes."""
        with self._lock:
            self._last_sync = self._clock()
        self.registry_connected.set(1)
        self.registry_degraded.set(0)
        if changed:
            self.resyncs.inc()

    def sync_failed(self, err: BaseException) -> None:
        """A registry read failed with ``err`` (labelled by its type: a short, fixed set)."""
        self.registry_connected.set(0)
        self.reload_failures.labels(type(err).__name__).inc()
        if isinstance(err, RegistryDegraded):
            self.registry_degraded.set(1)

    def watch_signatures(self, policy: object) -> None:
        """Count the refusals of ``policy`` (a registry's ``SignaturePolicy``, if it has one)."""
        if isinstance(policy, SignaturePolicy):
            policy.on_refused = lambda reason: self.refused_records.labels(reason).inc()

    def count_ood(self, task: str, out: bool) -> None:
        """One vector of ``task`` answered; ``out``: it was out of distribution. The OOD rate
        of a task is ``ood="true"`` over all its answers."""
        self.answers.labels(task, "true" if out else "false").inc()

    def count_ood_many(self, task: str, flags: Iterable[bool]) -> None:
        """``count_ood`` for a matrix: one increment per label instead of one per vector."""
        flags = list(flags)
        out = sum(flags)
        if out:
            self.answers.labels(task, "true").inc(out)
        if len(flags) > out:
            self.answers.labels(task, "false").inc(len(flags) - out)

    def metered_fitter(self, fitter: Fitter) -> Fitter:
        """``fitter``, counting its fits running and finished (training/ stays metric-free)."""
        return _MeteredFitter(fitter, self)


class _MeteredFitter:
    """A ``Fitter`` that counts the fits of the one it wraps."""

    def __init__(self, inner: Fitter, metrics: ExpertMetrics) -> None:
        self._inner = inner
        self._metrics = metrics

    def fit(self, job_id: str, request: FitRequest, progress: Progress) -> FitOutcome:
        m = self._metrics
        m.fits_running.inc()
        try:
            outcome = self._inner.fit(job_id, request, progress)
        except BaseException:
            m.fits.labels("failed").inc()
            raise
        finally:
            m.fits_running.dec()
        m.fits.labels("succeeded").inc()
        return outcome

    def release(self) -> None:
        self._inner.release()
