"""``lus analyze VIDEO.dcm --sr out.dcm`` end to end: both tiers on ephemeral ports, a US
multi-frame DICOM in, a DICOM Comprehensive SR out that references it."""

from __future__ import annotations

import io
import logging
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

import highdicom as hd
import pydicom
import pytest

from lus.clients.analysis import analyze
from lus.clients.biomarker import BiomarkerClient
from lus.clients.expert import ExpertClient
from lus.errors import InvalidInput
from lus.schema import load_schema
from lus.sr import codes
from lus.video import InputSpec
from lus_cli import cli
from lus_cli.serve_local import LocalStack, running_stack
from tests.fakes import (
    SR_FOREIGN_PHI,
    SR_PHI,
    encode_mp4,
    register_threshold_expert,
    untrained_artifact,
    us_cine_dicom,
)

SPEC = InputSpec(frames_per_clip=4, size=32, clips=4)
SERVED = "sr-e2e-test"


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, str, Path]]:
    root = tmp_path_factory.mktemp("sr")
    artifact = untrained_artifact(root / "model.safetensors", spec=SPEC, version=SERVED)
    register_threshold_expert(root / "registry", "toy_task", SERVED)
    video = root / "cine.dcm"
    video.write_bytes(us_cine_dicom(frames=20, size=48))
    with running_stack(
        LocalStack(
            artifact, root / "registry", biomarker_port=0, expert_port=0, expert_admin_port=0
        )
    ) as ports:
        yield f"127.0.0.1:{ports['biomarker']}", f"127.0.0.1:{ports['expert']}", video


def test_lus_analyze_writes_a_structured_report_of_the_dicom_cine(
    stack: tuple[str, str, Path],
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    caplog: pytest.LogCaptureFixture,
) -> None:
    biomarker, expert, video = stack
    out = tmp_path / "report.dcm"
    with caplog.at_level(logging.DEBUG):
        code = cli.main(
            ["analyze", str(video), "--biomarker", biomarker, "--expert", expert, "--sr", str(out)]
        )
    assert code == 0
    printed = capsys.readouterr().out
    assert "toy_task v1" in printed and f"Structured report (DICOM SR, TID 1500): {out}" in printed

    source = pydicom.dcmread(video, stop_before_pixels=True)
    data = out.read_bytes()
    sr = hd.sr.srread(io.BytesIO(data))
    assert isinstance(sr, hd.sr.ComprehensiveSR)
    assert sr.StudyInstanceUID == source.StudyInstanceUID
    assert (sr.PatientID, str(sr.PatientName)) == (SR_PHI["PatientID"], SR_PHI["PatientName"])
    evidence = sr.CurrentRequestedProcedureEvidenceSequence[0].ReferencedSeriesSequence[0]
    assert evidence.SeriesInstanceUID == source.SeriesInstanceUID
    assert evidence.ReferencedSOPSequence[0].ReferencedSOPInstanceUID == source.SOPInstanceUID
    report = hd.sr.MeasurementReport.from_sequence([sr])
    groups = report.get_image_measurement_groups(referenced_sop_instance_uid=source.SOPInstanceUID)
    assert len(groups) == len(load_schema().groups) + 1  # the findings and the one expert
    (toy,) = report.get_image_measurement_groups(finding_type=codes.EXPERT_ANSWER)
    assert toy.tracking_identifier == "expert toy_task v1"
    assert {m.name.meaning for m in toy.get_measurements()} >= {"toy_task: high", "toy_task: low"}
    versions = hd.sr.utils.find_content_items(sr, name=codes.BIOMARKER_MODEL, recursive=True)
    assert [item.TextValue for item in versions] == [SERVED]
    for value in SR_FOREIGN_PHI.values():
        assert value == "NO" or value.encode() not in data, value

    # nothing of the input's PHI in any log line, the servers' included (they run in process)
    logged = caplog.text + "".join(str(r.args) for r in caplog.records)
    uids = (source.StudyInstanceUID, source.SeriesInstanceUID, source.SOPInstanceUID)
    secrets = (*SR_PHI.values(), *SR_FOREIGN_PHI.values(), *uids)
    assert not [v for v in secrets if len(v) > 4 and v in logged]

    if shutil.which("dciodvfy"):
        run = subprocess.run(["dciodvfy", str(out)], capture_output=True, text=True, check=False)
        assert "Error" not in run.stdout + run.stderr, run.stdout + run.stderr


def test_a_report_of_a_video_that_is_not_dicom_is_refused_before_any_call(
    stack: tuple[str, str, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    biomarker, expert, _ = stack
    mp4 = tmp_path / "clip.mp4"
    mp4.write_bytes(encode_mp4(seed=3))
    out = tmp_path / "report.dcm"
    code = cli.main(
        ["analyze", str(mp4), "--biomarker", biomarker, "--expert", expert, "--sr", str(out)]
    )
    assert code == 2 and not out.exists()
    assert "needs a DICOM source instance" in capsys.readouterr().err


def test_the_analysis_path_returns_report_bytes_only_when_asked(
    stack: tuple[str, str, Path],
) -> None:
    biomarker, expert, video = stack
    data = video.read_bytes()
    with BiomarkerClient(biomarker, timeout_s=60) as b, ExpertClient(expert) as e:
        plain = analyze(b, e, data, tasks=["toy_task"])
        reported = analyze(b, e, data, tasks=["toy_task"], structured_report=True)
        with pytest.raises(InvalidInput, match="needs a DICOM source instance"):
            analyze(b, e, encode_mp4(seed=4), structured_report=True)
    assert plain.sr is None and reported.sr is not None
    assert [a.task for a in reported.answers] == ["toy_task"] and not reported.failures
    assert reported.extract.vector.model.version == SERVED
    assert pydicom.dcmread(io.BytesIO(reported.sr)).Modality == "SR"
