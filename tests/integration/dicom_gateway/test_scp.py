"""The gateway's DICOM listener, spoken to directly (pynetdicom as the calling AE): C-ECHO,
the calling-AE allow-list, and the refusals a sender gets before any work is done."""

from __future__ import annotations

import base64
import io
import os
import sqlite3
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from pydicom import Dataset, dcmread
from pydicom.uid import CTImageStorage, ExplicitVRLittleEndian, generate_uid
from pynetdicom import AE
from pynetdicom.association import Association
from pynetdicom.sop_class import (  # type: ignore[attr-defined]
    UltrasoundMultiFrameImageStorage,
    Verification,
)

from dicom_gateway.sender import close_transport
from lus.healthcheck import check
from tests.fakes import SR_PHI, us_cine_dicom
from tests.integration.dicom_gateway.conftest import GATEWAY_AE, GatewayFactory, outbox_states
from tests.processes import ServerProcess, free_port


@pytest.fixture
def gateway(start_gateway: GatewayFactory) -> Iterator[ServerProcess]:
    """A gateway whose destination nobody listens on (no test here gets as far as sending)."""
    with start_gateway(destination_port=free_port()) as server:
        yield server


def associate(port: int, calling_ae: str = "TESTSCU") -> Association:
    ae = AE(ae_title=calling_ae)
    ae.add_requested_context(Verification)
    ae.add_requested_context(UltrasoundMultiFrameImageStorage, ExplicitVRLittleEndian)
    ae.add_requested_context(CTImageStorage, ExplicitVRLittleEndian)
    return ae.associate("127.0.0.1", port, ae_title=GATEWAY_AE)


def store(port: int, dataset: Dataset) -> Dataset:
    assoc = associate(port)
    assert assoc.is_established
    try:
        response: Dataset = assoc.send_c_store(dataset)
    finally:
        assoc.release()
    return response


def test_c_echo_from_an_allowed_caller_and_health(gateway: ServerProcess) -> None:
    assoc = associate(gateway.ports["dicom"])
    assert assoc.is_established
    assert assoc.send_c_echo().Status == 0x0000
    assoc.release()
    health = f"127.0.0.1:{gateway.ports['health']}"
    assert check(health, "lus.dicom_gateway") and check(health)  # the containers' probe


def test_bad_settings_stop_the_start_with_one_line() -> None:
    env = {**os.environ, "LUS_GATEWAY_PORT": "70000"}
    result = subprocess.run(
        [sys.executable, "-m", "dicom_gateway"],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 2
    [line] = result.stderr.splitlines()
    assert line == (
        "cannot start: invalid LUS_GATEWAY_* settings: port: Input should be less than or equal"
        " to 65535"
    )


def run_gateway(**settings: str) -> subprocess.CompletedProcess[str]:
    """``python -m dicom_gateway`` with ``LUS_GATEWAY_*`` settings, expected to stop at start."""
    env = {**os.environ, "LUS_GATEWAY_PORT": "0", "LUS_GATEWAY_HEALTH_PORT": "0"}
    env.update({f"LUS_GATEWAY_{k.upper()}": v for k, v in settings.items()})
    command = [sys.executable, "-m", "dicom_gateway"]
    return subprocess.run(
        command, env=env, capture_output=True, text=True, timeout=120, check=False
    )


def test_a_redis_outbox_without_a_key_file_stops_the_start() -> None:
    result = run_gateway(outbox="redis", outbox_redis_url="redis://127.0.0.1:1/0")
    assert result.returncode == 2
    [line] = result.stderr.splitlines()
    assert line.startswith("cannot start: invalid LUS_GATEWAY_* settings:")
    assert "outbox redis needs outbox_key_file" in line


def test_an_unreachable_outbox_redis_stops_the_start_with_one_line(tmp_path: Path) -> None:
    key = tmp_path / "outbox.key"
    key.write_text(base64.b64encode(os.urandom(32)).decode() + "\n")
    url = f"redis://gateway:s3cret-password@127.0.0.1:{free_port()}/0"
    result = run_gateway(outbox="redis", outbox_redis_url=url, outbox_key_file=str(key))
    assert result.returncode == 2
    assert "cannot start:" in result.stderr and "cannot reach the outbox Redis" in result.stderr
    assert "Traceback" not in result.stderr and "s3cret" not in result.stderr


def test_a_malformed_key_file_or_an_old_outbox_stops_the_start(tmp_path: Path) -> None:
    key = tmp_path / "outbox.key"
    key.write_text("SECRET-LOOKING-BUT-NOT-BASE64!\n")
    outbox = str(tmp_path / "outbox.sqlite")
    result = run_gateway(outbox_key_file=str(key), outbox_path=outbox)
    assert result.returncode == 2
    assert "cannot start:" in result.stderr and "line 1: not base64" in result.stderr
    assert "SECRET-LOOKING" not in result.stderr

    with sqlite3.connect(outbox) as db:  # the first gateway's layout
        db.execute("CREATE TABLE jobs (key TEXT PRIMARY KEY, payload BLOB)")
    db.close()
    result = run_gateway(outbox_path=outbox)
    assert result.returncode == 2
    assert "cannot start:" in result.stderr and "has schema version 0" in result.stderr


def test_an_unknown_calling_ae_title_is_refused_at_association(gateway: ServerProcess) -> None:
    assoc = associate(gateway.ports["dicom"], calling_ae="STRANGER")
    assert assoc.is_rejected
    assert not assoc.is_established
    close_transport(assoc)


def test_a_ct_slice_gets_sop_class_not_supported_and_no_report(
    gateway: ServerProcess, gateway_env: dict[str, str]
) -> None:
    ct = dcmread(io.BytesIO(us_cine_dicom(frames=1, size=16)))
    ct.SOPClassUID = ct.file_meta.MediaStorageSOPClassUID = CTImageStorage
    ct.SOPInstanceUID = ct.file_meta.MediaStorageSOPInstanceUID = generate_uid()
    ct.Modality = "CT"
    del ct.NumberOfFrames
    response = store(gateway.ports["dicom"], ct)
    assert response.Status == 0x0122  # Refused: SOP Class not supported
    assert "Ultrasound" in response.ErrorComment
    assert outbox_states(Path(gateway_env["LUS_GATEWAY_OUTBOX_PATH"])) == {}


def test_a_corrupt_instance_is_refused_logged_without_phi_and_not_kept(
    gateway: ServerProcess, gateway_env: dict[str, str]
) -> None:
    cine = dcmread(io.BytesIO(us_cine_dicom(frames=10, size=32)))
    cine.PixelData = cine.PixelData[: len(cine.PixelData) // 3]  # cut short in transit
    response = store(gateway.ports["dicom"], cine)
    assert response.Status == 0xC000  # Error: cannot understand
    assert response.ErrorComment == "Pixel Data shorter than the image size"
    assert outbox_states(Path(gateway_env["LUS_GATEWAY_OUTBOX_PATH"])) == {}

    # No study to file a report in: refused before any work too.
    orphan = dcmread(io.BytesIO(us_cine_dicom(frames=2, size=16)))
    del orphan.StudyInstanceUID
    response = store(gateway.ports["dicom"], orphan)
    assert response.Status == 0xC000
    assert "UIDs" in response.ErrorComment

    log = "".join(gateway.log)
    assert "C-STORE refused (0xC000, corrupt)" in log
    assert "PHIMARK" not in log and SR_PHI["PatientBirthDate"] not in log
