"""DICOM TLS both ways: the listener (mutual TLS) and the sender to a TLS destination.

The destination here is a pynetdicom storage SCP in the test process, serving TLS and requiring
a client certificate; the certificates come from the TLS test matrix's helpers.
"""

from __future__ import annotations

import io
import queue
import ssl
from pathlib import Path

from pydicom import Dataset, dcmread
from pydicom.uid import ExplicitVRLittleEndian
from pynetdicom import AE, evt
from pynetdicom.association import Association
from pynetdicom.events import Event
from pynetdicom.sop_class import (  # type: ignore[attr-defined]
    ComprehensiveSRStorage,
    UltrasoundMultiFrameImageStorage,
    Verification,
)

from dicom_gateway.sender import close_transport
from tests.fakes import us_cine_dicom
from tests.integration.dicom_gateway.conftest import GATEWAY_AE, GatewayFactory
from tests.integration.lus.test_tls_matrix import make_ca, make_leaf
from tests.processes import free_port

WAIT_S = 60.0


def client_context(ca: Path, pair: tuple[Path, Path] | None) -> ssl.SSLContext:
    context = ssl.create_default_context(ssl.Purpose.SERVER_AUTH, cafile=ca)
    if pair is not None:
        context.load_cert_chain(*pair)
    return context


def associate(port: int, context: ssl.SSLContext | None) -> Association:
    ae = AE(ae_title="TESTSCU")
    ae.add_requested_context(Verification)
    ae.add_requested_context(UltrasoundMultiFrameImageStorage, ExplicitVRLittleEndian)
    tls = (context, "localhost") if context is not None else None
    return ae.associate("127.0.0.1", port, ae_title=GATEWAY_AE, tls_args=tls)


def test_dicom_tls_in_and_out(tmp_path: Path, start_gateway: GatewayFactory) -> None:
    ca, stranger_ca = make_ca(tmp_path, "ca"), make_ca(tmp_path, "stranger-ca")
    server = make_leaf(ca, tmp_path, "server", server=True)
    client = make_leaf(ca, tmp_path, "client", server=False)
    stranger = make_leaf(stranger_ca, tmp_path, "stranger", server=False)

    # The destination: a TLS storage SCP that wants a client certificate its CA signed.
    received: queue.Queue[Dataset] = queue.Queue()

    def on_store(event: Event) -> int:
        received.put(event.dataset)
        return 0x0000

    destination_context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    destination_context.load_cert_chain(*server)
    destination_context.load_verify_locations(ca.pem)
    destination_context.verify_mode = ssl.CERT_REQUIRED
    archive = AE(ae_title="ARCHIVE")
    archive.add_supported_context(ComprehensiveSRStorage, ExplicitVRLittleEndian)
    destination_port = free_port()
    scp = archive.start_server(
        ("127.0.0.1", destination_port),
        block=False,
        ssl_context=destination_context,
        evt_handlers=[(evt.EVT_C_STORE, on_store)],
    )
    assert scp is not None
    try:
        tls = {
            "dicom_tls_cert_file": str(server[0]),
            "dicom_tls_key_file": str(server[1]),
            "dicom_tls_client_ca_file": str(ca.pem),
            "destination_tls_ca_file": str(ca.pem),
            "destination_tls_cert_file": str(client[0]),
            "destination_tls_key_file": str(client[1]),
            "destination_tls_server_name": "localhost",
            "destination_ae_title": "ARCHIVE",
        }
        with start_gateway(destination_port=destination_port, **tls) as gateway:
            port = gateway.ports["dicom"]
            assoc = associate(port, client_context(ca.pem, client))
            assert assoc.is_established
            assert assoc.send_c_echo().Status == 0x0000
            cine = dcmread(io.BytesIO(us_cine_dicom(frames=8, size=32, seed=5)))
            assert assoc.send_c_store(cine).Status == 0x0000
            assoc.release()

            report = received.get(timeout=WAIT_S)
            assert report.SOPClassUID == ComprehensiveSRStorage
            assert report.StudyInstanceUID == cine.StudyInstanceUID

            # Plaintext, and a certificate from another CA, never get an association.
            for context in (None, client_context(ca.pem, stranger)):
                refused = associate(port, context)
                assert not refused.is_established
                close_transport(refused)
    finally:
        scp.shutdown()
