"""DICOM sniffing: one test, shared by the client and the decoder, decided by content alone."""

from __future__ import annotations

import hashlib
import io
import sys
from pathlib import Path

import pydicom
import pytest
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.uid import ExplicitVRLittleEndian, UltrasoundMultiFrameImageStorage, generate_uid

from lus.biomarker.v1 import biomarker_service_pb2 as pb
from lus.clients import sniff
from lus.clients.biomarker import BiomarkerClient
from lus.video import dicom

UID = generate_uid()


def _dataset() -> Dataset:
    ds = Dataset()
    ds.SOPClassUID = UltrasoundMultiFrameImageStorage
    ds.SOPInstanceUID = UID
    ds.Modality = "US"
    ds.file_meta = FileMetaDataset()
    ds.file_meta.MediaStorageSOPClassUID = ds.SOPClassUID
    ds.file_meta.MediaStorageSOPInstanceUID = UID
    ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
    return ds


def _part10() -> bytes:
    buffer = io.BytesIO()
    pydicom.dcmwrite(buffer, _dataset(), enforce_file_format=True)
    return buffer.getvalue()


def _bare() -> bytes:
    """No preamble, no file meta: what some gateways store."""
    ds = _dataset()
    del ds.file_meta
    buffer = io.BytesIO()
    pydicom.dcmwrite(buffer, ds, implicit_vr=True, little_endian=True)
    return buffer.getvalue()


NOT_DICOM = {
    "empty": b"",
    "mp4": b"\x00\x00\x00\x18ftypisom" + bytes(200),
    "gif": b"GIF89a" + bytes(200),
    "avi": b"RIFF\x00\x00\x00\x00AVI LIST" + bytes(200),
    "short DICM": bytes(128) + b"DIC",  # cut inside the magic
    "DICM too early": b"DICM" + bytes(200),
    "group 8, big element": b"\x08\x00\x16\x80" + bytes(200),
}


def test_part10_and_bare_datasets_are_dicom() -> None:
    part10, bare = _part10(), _bare()
    assert sniff.is_part10(part10) and sniff.looks_like_dicom(part10)
    assert not sniff.is_part10(bare) and sniff.is_bare_dataset(bare)
    assert sniff.looks_like_dicom(bare)


@pytest.mark.parametrize("name", sorted(NOT_DICOM))
def test_other_containers_are_not_dicom(name: str) -> None:
    data = NOT_DICOM[name]
    assert not sniff.is_part10(data)
    assert not sniff.looks_like_dicom(data)


def test_the_decoder_uses_the_same_function() -> None:
    assert dicom.looks_like_dicom is sniff.looks_like_dicom


class _RecordingStub:
    """Stands in for the service: records lookups and uploads, finds nothing."""

    def __init__(self) -> None:
        self.lookups: list[pb.LookupRequest] = []
        self.formats: list[int] = []

    def Lookup(self, request: pb.LookupRequest, *, timeout: float) -> pb.LookupResponse:
        self.lookups.append(request)
        return pb.LookupResponse(found=False)

    def Extract(self, request: pb.ExtractRequest, *, timeout: float) -> pb.ExtractResponse:
        self.formats.append(request.format)
        return pb.ExtractResponse()


def test_the_client_asks_by_content_and_labels_both_dicom_kinds_as_dicom(tmp_path: Path) -> None:
    stub = _RecordingStub()
    files = [("a.dcm", _part10()), ("b.dcm", _bare()), ("c.mp4", NOT_DICOM["mp4"])]
    with BiomarkerClient("127.0.0.1:1") as client:  # the channel connects lazily: never here
        client._stub = stub
        for name, data in files:
            (tmp_path / name).write_bytes(data)
            client.extract_path(tmp_path / name)
    # Every file is looked up by the sha256 of its bytes; a UID travels only as metadata to be
    # echoed, and only a Part-10 file has file meta to read it from.
    assert [r.content_sha256 for r in stub.lookups] == [
        hashlib.sha256(data).hexdigest() for _, data in files
    ]
    assert [r.sop_instance_uid for r in stub.lookups] == [UID, "", ""]
    assert stub.formats == [
        pb.VIDEO_FORMAT_DICOM,
        pb.VIDEO_FORMAT_DICOM,
        pb.VIDEO_FORMAT_UNSPECIFIED,
    ]


def test_without_pydicom_the_client_still_looks_up_by_content(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setitem(sys.modules, "pydicom", None)  # what a client-only install sees
    stub = _RecordingStub()
    (tmp_path / "a.dcm").write_bytes(_part10())
    with BiomarkerClient("127.0.0.1:1") as client:
        client._stub = stub
        client.extract_path(tmp_path / "a.dcm")
    digest = hashlib.sha256(_part10()).hexdigest()
    assert [(r.content_sha256, r.sop_instance_uid) for r in stub.lookups] == [(digest, "")]
    assert stub.formats == [pb.VIDEO_FORMAT_DICOM]
