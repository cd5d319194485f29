"""``lus.clients.analysis.analyze``: a report is refused before any call when it cannot be made,
and the time budget stops calls once spent."""

from __future__ import annotations

import io
from typing import Any, cast

import pydicom
import pytest

from lus.biomarker.v1 import biomarker_service_pb2 as bpb
from lus.clients.analysis import analyze
from lus.clients.biomarker import BiomarkerClient
from lus.errors import DeadlineExpired, InvalidInput
from lus.sr import SourceNotReferenceable
from tests.fakes import encode_mp4, us_cine_dicom


class RecordingBiomarkers:
    """Stands in for ``BiomarkerClient``: records calls, answers an empty extraction."""

    def __init__(self) -> None:
        self.calls: list[str] = []

    def extract_bytes(self, data: bytes, **_: Any) -> bpb.ExtractResponse:
        self.calls.append("extract")
        return bpb.ExtractResponse()

    def model_info(self, model_version: str = "") -> bpb.ModelInfo:
        self.calls.append("model_info")
        return bpb.ModelInfo()


def client(recording: RecordingBiomarkers) -> BiomarkerClient:
    return cast(BiomarkerClient, recording)


def test_a_report_of_a_non_dicom_video_is_refused_before_any_call() -> None:
    recording = RecordingBiomarkers()
    with pytest.raises(InvalidInput, match="needs a DICOM source instance"):
        analyze(client(recording), None, encode_mp4(seed=0), structured_report=True)
    assert recording.calls == []


def test_a_report_of_dicom_without_its_uids_is_refused_before_any_call() -> None:
    dataset = pydicom.dcmread(io.BytesIO(us_cine_dicom(frames=2, size=8)))
    del dataset.SeriesInstanceUID
    buffer = io.BytesIO()
    dataset.save_as(buffer, enforce_file_format=True)
    recording = RecordingBiomarkers()
    with pytest.raises(SourceNotReferenceable, match="SeriesInstanceUID"):
        analyze(client(recording), None, buffer.getvalue(), structured_report=True)
    assert recording.calls == []


def test_without_a_report_any_video_is_analysed() -> None:
    recording = RecordingBiomarkers()
    result = analyze(client(recording), None, encode_mp4(seed=0))
    assert recording.calls == ["extract", "model_info"] and result.sr is None
    assert result.answers == () and result.extraction is result.extract


def test_a_spent_budget_stops_the_next_call() -> None:
    recording = RecordingBiomarkers()
    with pytest.raises(DeadlineExpired, match="raise timeout_s"):
        analyze(client(recording), None, encode_mp4(seed=0), timeout_s=0.0)
    assert recording.calls == ["extract"]
