"""Analysis workers: each received instance through both tiers (the shipped gRPC clients) into a
structured report (``lus.sr``, built here from the bytes the gateway holds: no PHI goes to the
tiers), queued in the outbox for the sender.

A refusal by the tiers (bad pixel data, a schema mismatch) fails the job for good; anything
else (a tier down, overloaded, a deadline) retries it with backoff until ``max_attempts``.
Logs name the job's outcome and the tiers' status, never a value read from the instance.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable

import grpc

from dicom_gateway.backoff import backoff_s
from dicom_gateway.metrics import GatewayMetrics
from dicom_gateway.outbox import Job, Outbox
from dicom_gateway.settings import GatewaySettings
from lus.clients.analysis import analyze
from lus.clients.biomarker import BiomarkerClient
from lus.clients.expert import ExpertClient
from lus.errors import InvalidInput, LusError
from lus.sr import build_structured_report, read_source, to_part10

logger = logging.getLogger(__name__)

PERMANENT = (
    grpc.StatusCode.INVALID_ARGUMENT,
    grpc.StatusCode.FAILED_PRECONDITION,
    grpc.StatusCode.OUT_OF_RANGE,
)
"""Statuses after which analysing the same bytes again cannot succeed."""

IDLE_POLL_S = 0.5
"""How often an idle worker looks for due retries (new instances wake it at once)."""


class Analysts:
    """``workers`` threads that claim received jobs and turn them into queued reports."""

    def __init__(
        self,
        settings: GatewaySettings,
        outbox: Outbox,
        metrics: GatewayMetrics,
        on_report: Callable[[], None],
    ) -> None:
        self.settings = settings
        self.outbox = outbox
        self.metrics = metrics
        self.on_report = on_report
        tls = settings.grpc_tls
        timeout = settings.analysis_timeout_s
        self.biomarker = BiomarkerClient(settings.biomarker_address, timeout_s=timeout, tls=tls)
        self.expert = (
            ExpertClient(settings.expert_address, timeout_s=timeout, tls=tls)
            if settings.expert_address
            else None
        )
        self._wake = threading.Event()
        self._stopping = threading.Event()
        self._threads = [
            threading.Thread(target=self._run, name=f"gateway-analyst-{i}", daemon=True)
            for i in range(settings.workers)
        ]

    def start(self) -> None:
        for thread in self._threads:
            thread.start()

    def wake(self) -> None:
        self._wake.set()

    def stop(self, grace_s: float) -> None:
        """Finish the analyses in flight (within ``grace_s``); unfinished ones stay received."""
        self._stopping.set()
        self._wake.set()
        deadline = time.monotonic() + grace_s
        for thread in self._threads:
            thread.join(max(0.0, deadline - time.monotonic()))
        self.biomarker.close()
        if self.expert is not None:
            self.expert.close()

    def _run(self) -> None:
        while not self._stopping.is_set():
            jobs = self.outbox.claim("received", 1)
            if not jobs:
                self._wake.wait(IDLE_POLL_S)
                self._wake.clear()
                continue
            try:
                self.process(jobs[0])
            except Exception:  # never let one job end a worker; the lease brings it back
                logger.exception("analysis worker error (job left for retry)")

    def process(self, job: Job) -> None:
        """Analyse one received instance and queue its report, or retry / fail the job."""
        started = time.perf_counter()
        try:
            analysis = analyze(
                self.biomarker,
                self.expert,
                job.payload,
                tasks=self.settings.tasks,
                timeout_s=self.settings.analysis_timeout_s,
            )
            analysed = time.perf_counter()
            report = build_structured_report(read_source(job.payload), analysis)
        except InvalidInput as err:  # the tiers' refusal, or a source a report cannot reference
            self._fail(job, f"INVALID_ARGUMENT: {err}")
            return
        except grpc.RpcError as err:
            code = err.code() if isinstance(err, grpc.Call) else grpc.StatusCode.UNKNOWN
            details = err.details() if isinstance(err, grpc.Call) else ""
            if code in PERMANENT:
                self._fail(job, f"{code.name}: {details}")
            else:
                self._retry(job, code.name)
            return
        except LusError as err:
            self._retry(job, err.code.name)
            return
        for failure in analysis.failures:
            logger.warning("an expert did not answer: %s", failure)
        self.outbox.analysed(job.key, to_part10(report))
        self.metrics.stage_seconds.labels("analyze").observe(analysed - started)
        self.metrics.stage_seconds.labels("report").observe(time.perf_counter() - analysed)
        self.metrics.analyses.labels("ok").inc()
        self.on_report()

    def _fail(self, job: Job, why: str) -> None:
        # The tiers' messages never echo input values, so they are safe to log.
        logger.warning("the tiers refused an instance; no report will be sent: %s", why)
        self.outbox.fail(job.key)
        self.metrics.analyses.labels("failed").inc()

    def _retry(self, job: Job, code: str) -> None:
        delay = backoff_s(
            job.attempts + 1, self.settings.retry_initial_s, self.settings.retry_max_s
        )
        state = self.outbox.retry(job.key, delay, self.settings.max_attempts)
        outcome = "dead" if state == "dead" else "retry"
        self.metrics.analyses.labels(outcome).inc()
        logger.warning("analysis failed (%s); %s", code, f"{outcome} in {delay:.1f} s")
