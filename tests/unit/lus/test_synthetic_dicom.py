"""`lus synth --formats dcm`: synthetic cines as DICOM Ultrasound Multi-frame Images, the input a
PACS integrator tries the DICOM path with (docs/pacs.md)."""

from __future__ import annotations

import csv
import shutil
import subprocess
from pathlib import Path

import pydicom
import pytest
from pydicom.uid import UltrasoundMultiFrameImageStorage

from lus.provenance import SYNTHETIC_DATA_NOTICE
from lus.synthetic import generate_dataset
from lus.synthetic.dicom_cine import STUDY_DESCRIPTION
from lus.video import InputSpec, decode_clips


def test_dcm_videos_are_us_multiframe_files_of_the_manifests_patients(tmp_path: Path) -> None:
    manifest = generate_dataset(
        tmp_path, n_videos=3, frames=12, height=48, width=48, formats=("dcm", "mp4"), progress=False
    )
    rows = list(csv.DictReader(manifest.read_text().splitlines()))
    dicom_rows = [r for r in rows if r["video"].endswith(".dcm")]
    assert len(dicom_rows) == 2
    for row in dicom_rows:
        path = tmp_path / row["video"]
        ds = pydicom.dcmread(path)
        assert ds.SOPClassUID == UltrasoundMultiFrameImageStorage and ds.Modality == "US"
        assert ds.PatientID == row["patient_id"] and str(ds.PatientName) == "SYNTHETIC^CINE"
        assert ds.StudyDescription == STUDY_DESCRIPTION
        assert SYNTHETIC_DATA_NOTICE[:40] in ds.ImageComments
        assert (int(ds.NumberOfFrames), ds.Rows, ds.Columns) == (12, 48, 48)
        # the biomarker tier's own decoder takes it
        clips = decode_clips(path.read_bytes(), InputSpec(frames_per_clip=4, size=32, clips=2))
        assert clips.clips.shape[0] == 2
    again = tmp_path / "again"
    generate_dataset(again, n_videos=3, frames=12, height=48, width=48, formats=("dcm", "mp4"))
    first = tmp_path / dicom_rows[0]["video"]
    assert (again / dicom_rows[0]["video"]).read_bytes() == first.read_bytes()


@pytest.mark.skipif(shutil.which("dciodvfy") is None, reason="dicom3tools not installed")
def test_dciodvfy_finds_no_error_in_a_synthetic_cine(tmp_path: Path) -> None:
    manifest = generate_dataset(
        tmp_path, n_videos=1, frames=8, height=32, width=32, formats=("dcm",), progress=False
    )
    [row] = csv.DictReader(manifest.read_text().splitlines())
    result = subprocess.run(
        ["dciodvfy", str(tmp_path / row["video"])], capture_output=True, text=True, check=False
    )
    errors = [line for line in result.stderr.splitlines() if line.startswith("Error")]
    assert errors == [], result.stderr
