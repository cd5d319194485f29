"""The DICOM listener: C-ECHO, and C-STORE of ultrasound instances into the outbox.

A C-STORE is answered once the instance is durably in the outbox (success), or refused before
any work with a failure status: 0x0122 for a SOP class other than ultrasound (the listener
accepts every storage class at association, so that a sender gets this status rather than a
rejected context), 0xA700 when the backlog, the instance size or the association's instance
count is over its limit, 0xA900 / 0xC000 for a data set that is not what it claims or is corrupt.
Associations from calling AE titles outside the allow-list are rejected. Nothing read from an
instance is logged (no UID either): only its outcome.
"""

from __future__ import annotations

import logging
import ssl
import threading
import time
import weakref
from collections.abc import Callable

from pydicom.dataset import Dataset
from pynetdicom import AE, StoragePresentationContexts, evt
from pynetdicom.association import Association
from pynetdicom.events import Event
from pynetdicom.sop_class import Verification  # type: ignore[attr-defined]
from pynetdicom.transport import ThreadedAssociationServer

from dicom_gateway.checks import (
    OUT_OF_RESOURCES,
    SOP_CLASS_NOT_SUPPORTED,
    SUCCESS,
    TRANSFER_SYNTAXES,
    ULTRASOUND_SOP_CLASSES,
    Refusal,
    parse_instance,
)
from dicom_gateway.metrics import GatewayMetrics
from dicom_gateway.outbox import Outbox
from dicom_gateway.settings import GatewaySettings

logger = logging.getLogger(__name__)


def status(code: int, comment: str = "") -> Dataset:
    """A C-STORE response status, with an Error Comment (LO: 64 characters at most)."""
    ds = Dataset()
    ds.Status = code
    if comment:
        ds.ErrorComment = comment[:64]
    return ds


class StoreHandler:
    """Turns C-STORE requests into outbox jobs; ``on_accepted`` wakes the analysis workers."""

    def __init__(
        self,
        settings: GatewaySettings,
        outbox: Outbox,
        metrics: GatewayMetrics,
        on_accepted: Callable[[], None],
    ) -> None:
        self.settings = settings
        self.outbox = outbox
        self.metrics = metrics
        self.on_accepted = on_accepted
        self._per_association: weakref.WeakKeyDictionary[Association, int] = (
            weakref.WeakKeyDictionary()
        )
        self._lock = threading.Lock()

    def __call__(self, event: Event) -> Dataset:
        started = time.perf_counter()
        try:
            outcome = self._store(event)
        except Refusal as refusal:
            self.metrics.instances.labels(refusal.outcome).inc()
            logger.warning(
                "C-STORE refused (0x%04X, %s): %s", refusal.status, refusal.outcome, refusal.comment
            )
            return status(refusal.status, refusal.comment)
        self.metrics.instances.labels(outcome).inc()
        self.metrics.stage_seconds.labels("receive").observe(time.perf_counter() - started)
        return status(SUCCESS)

    def _store(self, event: Event) -> str:
        sop_class = str(event.context.abstract_syntax)
        if sop_class not in ULTRASOUND_SOP_CLASSES:
            raise Refusal(
                SOP_CLASS_NOT_SUPPORTED,
                "not_ultrasound",
                "only Ultrasound (Multi-frame) Image Storage is analysed",
            )
        self._count_in_association(event.assoc)
        if self.outbox.backlog() >= self.settings.max_backlog:
            raise Refusal(OUT_OF_RESOURCES, "busy", "analysis backlog full; retry later")
        part10 = event.encoded_dataset(include_meta=True)
        if len(part10) > self.settings.max_instance_bytes:
            raise Refusal(OUT_OF_RESOURCES, "too_large", "instance above the gateway's size limit")
        ds = parse_instance(part10, sop_class)
        if not self.outbox.accept(str(ds.SOPInstanceUID), part10):
            logger.info("C-STORE of an instance already accepted: acknowledged, not redone")
            return "duplicate"
        self.on_accepted()
        return "accepted"

    def _count_in_association(self, assoc: Association) -> None:
        with self._lock:
            count = self._per_association.get(assoc, 0) + 1
            self._per_association[assoc] = count
        if count > self.settings.max_instances_per_association:
            raise Refusal(
                OUT_OF_RESOURCES, "association_limit", "instances per association over the limit"
            )


def _echo(_event: Event) -> int:
    return SUCCESS


def build_ae(settings: GatewaySettings) -> AE:
    """The application entity with the gateway's limits and presentation contexts."""
    ae = AE(ae_title=settings.ae_title)
    ae.maximum_pdu_size = settings.max_pdu_bytes
    ae.maximum_associations = settings.max_associations
    ae.acse_timeout = settings.acse_timeout_s
    ae.dimse_timeout = settings.dimse_timeout_s
    ae.network_timeout = settings.network_timeout_s
    ae.require_called_aet = True
    ae.require_calling_aet = list(settings.allowed_calling_aes)
    ae.add_supported_context(Verification)
    for context in StoragePresentationContexts:
        assert context.abstract_syntax is not None
        ae.add_supported_context(context.abstract_syntax, list(TRANSFER_SYNTAXES))
    return ae


def server_ssl_context(settings: GatewaySettings) -> ssl.SSLContext | None:
    """DICOM TLS of the listener (PS3.15 B.1 style: TLS 1.2+), or None for plaintext."""
    if settings.dicom_tls_cert_file is None or settings.dicom_tls_key_file is None:
        return None
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    context.load_cert_chain(settings.dicom_tls_cert_file, settings.dicom_tls_key_file)
    if settings.dicom_tls_client_ca_file is not None:
        context.load_verify_locations(settings.dicom_tls_client_ca_file)
        context.verify_mode = ssl.CERT_REQUIRED
    return context


def start_listener(
    settings: GatewaySettings, handler: StoreHandler, metrics: GatewayMetrics
) -> ThreadedAssociationServer:
    """Listen on ``host:port`` in background threads; returns the running server."""
    ae = build_ae(settings)

    def accepted(_event: Event) -> None:
        metrics.associations.labels("accepted").inc()

    def rejected(_event: Event) -> None:
        metrics.associations.labels("rejected").inc()
        logger.warning("association rejected (calling AE title not allowed, or limits)")

    handlers = [
        (evt.EVT_C_ECHO, _echo),
        (evt.EVT_C_STORE, handler),
        (evt.EVT_ACCEPTED, accepted),
        (evt.EVT_REJECTED, rejected),
    ]
    server = ae.start_server(
        (settings.host, settings.port),
        block=False,
        ssl_context=server_ssl_context(settings),
        evt_handlers=handlers,  # type: ignore[arg-type]
    )
    assert server is not None
    return server
