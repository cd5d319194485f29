"""Orthanc -> gateway -> both tiers -> SR back into Orthanc, with real servers throughout:
Orthanc (Debian package), dcmtk's storescu, ``lus serve`` and ``python -m dicom_gateway``."""

from __future__ import annotations

import base64
import io
import os
import shutil
import signal
import subprocess
from pathlib import Path
from typing import Any

import pytest
from pydicom import Dataset, dcmread

from lus.clients.biomarker import BiomarkerClient
from lus.clients.expert import ExpertClient
from lus.sr import codes
from tests.fakes import SR_PHI, us_cine_dicom
from tests.integration.dicom_gateway.conftest import (
    SERVED,
    TASK,
    GatewayFactory,
    Tiers,
    outbox_states,
    send_attempts,
    storescu,
    wait_until,
)
from tests.integration.dicom_gateway.orthanc import Orthanc


def content_items(ds: Dataset) -> list[tuple[str, str]]:
    """(concept name, value) of every SR content item, depth first; a code's value is its
    meaning, a number's its value."""
    items: list[tuple[str, str]] = []
    for item in ds.get("ContentSequence", []):
        name = (
            item.ConceptNameCodeSequence[0].CodeMeaning if "ConceptNameCodeSequence" in item else ""
        )
        if "TextValue" in item:
            items.append((name, str(item.TextValue)))
        elif "ConceptCodeSequence" in item:
            items.append((name, str(item.ConceptCodeSequence[0].CodeMeaning)))
        elif "MeasuredValueSequence" in item:
            items.append((name, str(item.MeasuredValueSequence[0].NumericValue)))
        items += content_items(item)
    return items


def assert_valid_iod(report: Dataset, path: Path) -> None:
    """dicom3tools' dciodvfy, a checker this project did not write, finds no error in it."""
    binary = shutil.which("dciodvfy")
    if binary is None:
        pytest.skip("dicom3tools is not installed (.ci/run installs it)")
    report.save_as(path, enforce_file_format=True)
    command = [binary, str(path)]
    result = subprocess.run(command, check=False, capture_output=True, text=True, timeout=60)
    errors = [line for line in (result.stdout + result.stderr).splitlines() if "Error" in line]
    assert errors == [], "\n".join(errors)


def reports_in(orthanc: Orthanc) -> list[tuple[dict[str, Any], Dataset]]:
    """Every SR Orthanc holds, with its parsed file."""
    return [
        (meta, dcmread(io.BytesIO(orthanc.get_bytes(f"/instances/{meta['ID']}/file"))))
        for meta in orthanc.instances("SR")
    ]


def test_a_cine_pushed_into_orthanc_comes_back_as_an_sr_in_its_study(
    tmp_path: Path,
    tiers: Tiers,
    orthanc: Orthanc,
    start_gateway: GatewayFactory,
    gateway_env: dict[str, str],
) -> None:
    outbox = Path(gateway_env["LUS_GATEWAY_OUTBOX_PATH"])
    cine = tmp_path / "cine.dcm"
    cine.write_bytes(us_cine_dicom(frames=12, size=48, seed=3))
    source = dcmread(cine)
    with start_gateway(destination_port=orthanc.dicom_port) as gateway:
        storescu(orthanc.dicom_port, cine)
        wait_until(lambda: len(orthanc.instances("SR")) == 1, "the report in Orthanc")

    [(meta, report)] = reports_in(orthanc)
    # Filed in the cine's study, for its patient, referencing the cine.
    [study] = orthanc.get("/studies")
    assert orthanc.get(f"/series/{meta['ParentSeries']}")["ParentStudy"] == study
    assert report.StudyInstanceUID == source.StudyInstanceUID
    assert (report.PatientID, str(report.PatientName)) == (
        SR_PHI["PatientID"],
        SR_PHI["PatientName"],
    )
    [evidence] = report.CurrentRequestedProcedureEvidenceSequence
    [series] = evidence.ReferencedSeriesSequence
    assert series.SeriesInstanceUID == source.SeriesInstanceUID
    [referenced] = series.ReferencedSOPSequence
    assert referenced.ReferencedSOPInstanceUID == source.SOPInstanceUID
    assert referenced.ReferencedSOPClassUID == source.SOPClassUID

    # The findings are what the tiers say about this cine when asked directly.
    with BiomarkerClient(tiers.biomarker) as biomarker, ExpertClient(tiers.expert) as expert:
        extract = biomarker.extract_bytes(cine.read_bytes())
        answer = expert.predict(TASK, extract.vector)
    items = content_items(report)
    assert (codes.VIDEO_PIXEL_HASH.meaning, extract.pixel_hash) in items
    assert (codes.BIOMARKER_MODEL.meaning, SERVED) in items
    assert (codes.PREDICTED_CLASS.meaning, codes.class_code(TASK, answer.label).meaning) in items
    for probability in answer.probabilities:
        name = codes.class_code(TASK, probability.label).meaning
        [value] = [float(v) for n, v in items if n == name]
        assert abs(value - probability.probability) < 1e-3

    assert outbox_states(outbox) == {"sent": 1}
    assert_valid_iod(report, tmp_path / "report.dcm")
    log = "".join(gateway.log)
    assert "PHIMARK" not in log and "stored at the destination" in log


def test_every_report_arrives_once_across_a_pacs_outage_and_a_gateway_restart(
    tmp_path: Path,
    orthanc: Orthanc,
    start_gateway: GatewayFactory,
    gateway_env: dict[str, str],
) -> None:
    """The reports go to a second Orthanc (the archive), down while they are made: they wait
    in the outbox, survive a gateway restart, and each arrives once when it is back."""
    cines = []
    for seed in range(3):
        path = tmp_path / f"cine{seed}.dcm"
        path.write_bytes(us_cine_dicom(frames=8, size=40, seed=10 + seed))
        cines.append(path)
    outbox = Path(gateway_env["LUS_GATEWAY_OUTBOX_PATH"])
    archive = Orthanc(tmp_path / "archive", "UNUSED", 1)
    archive.folder.mkdir()
    archive.start()
    archive.stop()  # down from here on, until restarted below
    try:
        with start_gateway(destination_port=archive.dicom_port) as gateway:
            storescu(orthanc.dicom_port, *cines, cines[0])  # the first one twice
            wait_until(
                lambda: outbox_states(outbox) == {"pending": 3} and send_attempts(outbox) >= 3,
                "3 reports made, each send refused at least once",
            )
            gateway.proc.send_signal(signal.SIGTERM)
            assert gateway.proc.wait(timeout=60) == 0
        assert outbox_states(outbox) == {"pending": 3}  # kept across the restart
        # ... sealed: the reports copy the patient module, yet none of it is on disk in clear.
        at_rest = b"".join(p.read_bytes() for p in outbox.parent.glob(outbox.name + "*"))
        assert b"PHIMARK" not in at_rest
        for cine in cines:
            assert str(dcmread(cine).SOPInstanceUID).encode() not in at_rest
        with start_gateway(destination_port=archive.dicom_port) as gateway:
            archive.start()
            wait_until(lambda: outbox_states(outbox) == {"sent": 3}, "every report acknowledged")
        reports = reports_in(archive)
    finally:
        archive.stop()
    assert len(reports) == 3
    referenced = sorted(
        r.CurrentRequestedProcedureEvidenceSequence[0]
        .ReferencedSeriesSequence[0]
        .ReferencedSOPSequence[0]
        .ReferencedSOPInstanceUID
        for _, r in reports
    )
    assert referenced == sorted(str(dcmread(c).SOPInstanceUID) for c in cines)
    assert "PHIMARK" not in "".join(gateway.log)


@pytest.mark.redis
def test_with_the_redis_outbox_a_cine_comes_back_as_an_sr_too(
    tmp_path: Path,
    orthanc: Orthanc,
    start_gateway: GatewayFactory,
    shared_redis: tuple[str, str],
) -> None:
    url, prefix = shared_redis
    cine = tmp_path / "cine.dcm"
    cine.write_bytes(us_cine_dicom(frames=8, size=40, seed=21))
    key = tmp_path / "outbox.key"
    key.write_text(base64.b64encode(os.urandom(32)).decode() + "\n")
    redis_outbox = {"outbox": "redis", "outbox_redis_url": url, "outbox_redis_prefix": prefix}
    redis_outbox["outbox_key_file"] = str(key)
    with start_gateway(destination_port=orthanc.dicom_port, **redis_outbox):
        storescu(orthanc.dicom_port, cine)
        wait_until(lambda: len(orthanc.instances("SR")) == 1, "the report in Orthanc")
    [(_, report)] = reports_in(orthanc)
    assert report.StudyInstanceUID == dcmread(cine).StudyInstanceUID
    from dicom_gateway.redis_outbox import RedisOutbox

    outbox = RedisOutbox(url, prefix)
    try:
        assert outbox.counts()["sent"] == 1 and outbox.backlog() == 0
    finally:
        outbox.close()
