"""The sender: pending reports to the destination AE over C-STORE, until it acknowledges them.

One thread; each round claims the due reports, opens one association for them and stores
each. A success (or a warning status) marks the job sent; a failure status, a refused or lost
association retries it with backoff, and after ``max_attempts`` dead-letters it. A report keeps
its SOP Instance UID across retries, so a destination that stored it before the gateway could
record the acknowledgement stores it once.
"""

from __future__ import annotations

import io
import logging
import ssl
import threading
import time

from pydicom import dcmread
from pydicom.dataset import Dataset
from pydicom.uid import ExplicitVRLittleEndian, ImplicitVRLittleEndian
from pynetdicom import AE
from pynetdicom.association import Association

from dicom_gateway.backoff import backoff_s
from dicom_gateway.metrics import GatewayMetrics
from dicom_gateway.outbox import Job, Outbox
from dicom_gateway.settings import GatewaySettings

logger = logging.getLogger(__name__)

BATCH = 16
"""Reports sent per association."""

IDLE_POLL_S = 0.5
"""How often an idle sender looks for due retries (new reports wake it at once)."""


def is_stored(status: int) -> bool:
    """Success (0x0000) or a warning (0xB000 coercion, 0xB006, 0xB007): the SCP kept it."""
    return status == 0x0000 or (status & 0xF000) == 0xB000


def close_transport(assoc: Association) -> None:
    """Close a refused or failed association's socket: pynetdicom (3.0.4) shuts it down but
    leaves it open, and a destination down for hours would pile up descriptors until the
    garbage collector finds them."""
    transport = assoc.dul.socket
    raw = getattr(transport, "socket", None)
    if transport is not None:
        transport.close()
    if raw is not None:
        raw.close()


class Sender:
    """Sends queued reports to ``destination_*``; ``wake()`` when one is queued."""

    def __init__(self, settings: GatewaySettings, outbox: Outbox, metrics: GatewayMetrics) -> None:
        self.settings = settings
        self.outbox = outbox
        self.metrics = metrics
        self._wake = threading.Event()
        self._stopping = threading.Event()
        self._thread = threading.Thread(target=self._run, name="gateway-sender", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def wake(self) -> None:
        self._wake.set()

    def stop(self, grace_s: float) -> None:
        self._stopping.set()
        self._wake.set()
        self._thread.join(grace_s)

    def _run(self) -> None:
        while not self._stopping.is_set():
            jobs = self.outbox.claim("pending", BATCH)
            if not jobs:
                self._wake.wait(IDLE_POLL_S)
                self._wake.clear()
                continue
            try:
                self.send(jobs)
            except Exception:  # never end the sender; the leases bring the jobs back
                logger.exception("sender error (reports left for retry)")

    def send(self, jobs: list[Job]) -> None:
        """Store ``jobs``' reports over one association; settle each job."""
        started = time.perf_counter()
        reports: list[Dataset] = [dcmread(io.BytesIO(job.payload)) for job in jobs]
        assoc = self._associate(reports)
        if assoc is None:
            for job in jobs:
                self._retry(job, "destination refused or unreachable")
            return
        try:
            for job, report in zip(jobs, reports, strict=True):
                self._store(assoc, job, report)
        finally:
            if assoc.is_established:
                assoc.release()
        per_report = (time.perf_counter() - started) / len(jobs)
        for _ in jobs:
            self.metrics.stage_seconds.labels("send").observe(per_report)

    def _store(self, assoc: Association, job: Job, report: Dataset) -> None:
        if not assoc.is_established:
            self._retry(job, "association lost")
            return
        response = assoc.send_c_store(report)
        code = int(response.get("Status", -1)) if response else -1
        if code >= 0 and is_stored(code):
            self.outbox.acknowledged(job.key)
            self.metrics.sends.labels("ok").inc()
            # The job id (a keyed hash) rather than the report's UID: no UID in the logs.
            logger.info("report of job %s stored at the destination", job.key[:12])
        else:
            self._retry(job, f"status 0x{code:04X}" if code >= 0 else "no response")

    def _associate(self, reports: list[Dataset]) -> Association | None:
        ae = AE(ae_title=self.settings.ae_title)
        ae.acse_timeout = self.settings.acse_timeout_s
        ae.dimse_timeout = self.settings.dimse_timeout_s
        ae.network_timeout = self.settings.network_timeout_s
        for sop_class in sorted({str(report.SOPClassUID) for report in reports}):
            ae.add_requested_context(sop_class, [ExplicitVRLittleEndian, ImplicitVRLittleEndian])
        assoc = ae.associate(
            self.settings.destination_host,
            self.settings.destination_port,
            ae_title=self.settings.destination_ae_title,
            tls_args=self._tls_args(),
        )
        if assoc.is_established:
            return assoc
        close_transport(assoc)
        return None

    def _tls_args(self) -> tuple[ssl.SSLContext, str] | None:
        settings = self.settings
        if settings.destination_tls_ca_file is None:
            return None
        context = ssl.create_default_context(
            ssl.Purpose.SERVER_AUTH, cafile=settings.destination_tls_ca_file
        )
        context.minimum_version = ssl.TLSVersion.TLSv1_2
        if settings.destination_tls_cert_file and settings.destination_tls_key_file:
            context.load_cert_chain(
                settings.destination_tls_cert_file, settings.destination_tls_key_file
            )
        name = settings.destination_tls_server_name or settings.destination_host
        return context, name

    def _retry(self, job: Job, why: str) -> None:
        delay = backoff_s(
            job.attempts + 1, self.settings.retry_initial_s, self.settings.retry_max_s
        )
        state = self.outbox.retry(job.key, delay, self.settings.max_attempts)
        outcome = "dead" if state == "dead" else "retry"
        self.metrics.sends.labels(outcome).inc()
        logger.warning("report not stored (%s); %s in %.1f s", why, outcome, delay)
