"""Lookup keys, served lineage and the decoder id: the pure parts of "same content only"."""

from __future__ import annotations

from pathlib import Path

import pytest

from biomarker_service.converters import lookup_keys
from biomarker_service.identity import RawUpload, decoder_id
from biomarker_service.lineage import backend_precision, file_sha256, file_stamp, served_lineage
from lus.biomarker.v1 import biomarker_service_pb2 as pb
from lus.errors import InvalidInput
from lus.feature_store import raw_frames_sha256

SHA = "ab" * 32


def test_a_uid_alone_is_refused_with_what_to_send_instead() -> None:
    with pytest.raises(InvalidInput) as caught:
        lookup_keys(pb.LookupRequest(sop_instance_uid="1.2.3.4"))
    message = str(caught.value)
    assert "a UID is metadata, not a key" in message and "send content_sha256" in message
    assert "1.2.3.4" not in message
    with pytest.raises(InvalidInput, match="needs content_sha256"):
        lookup_keys(pb.LookupRequest())


def test_keys_are_normalised_and_the_uid_kept_as_metadata() -> None:
    request = pb.LookupRequest(
        content_sha256=f" {SHA.upper()} ", sop_instance_uid="1.2.3", model_version="m+int8-static"
    )
    keys = lookup_keys(request)
    assert (keys.content_sha256, keys.pixel_hash) == (SHA, "")
    assert (keys.sop_instance_uid, keys.model_version) == ("1.2.3", "m+int8-static")


@pytest.mark.parametrize(
    ("request_fields", "fragment"),
    [
        ({"content_sha256": "abc"}, "content_sha256 must be 64 hex"),
        ({"pixel_hash": "z" * 64}, "pixel_hash must be 64 hex"),
        ({"content_sha256": SHA, "sop_instance_uid": "1.2.x"}, "digits and dots"),
        ({"content_sha256": SHA, "model_version": "a b"}, "served model version"),
        ({"content_sha256": SHA, "model_version": "v" * 129}, "128 at most"),
    ],
)
def test_malformed_keys_are_refused_without_echoing_them(
    request_fields: dict[str, str], fragment: str
) -> None:
    with pytest.raises(InvalidInput, match=fragment) as caught:
        lookup_keys(pb.LookupRequest(**request_fields))
    for value in request_fields.values():
        assert value not in str(caught.value)


class _Declared:
    version_suffix = "+int8-static"
    precision = "int8-static"


class _Undeclared:
    version_suffix = "+int8-dynamic"


class _Plain:
    version_suffix = ""


def test_the_served_version_and_precision_come_from_the_backend() -> None:
    lineage = served_lineage("m1", _Declared(), SHA)
    assert (lineage.version, lineage.artifact_sha256, lineage.precision) == (
        "m1+int8-static",
        SHA,
        "int8-static",
    )
    assert backend_precision(_Undeclared()) == "int8-dynamic"
    assert backend_precision(_Plain()) == "fp32"


def test_the_artifact_hash_refuses_a_file_replaced_since_it_was_loaded(tmp_path: Path) -> None:
    path = tmp_path / "model.safetensors"
    path.write_bytes(b"weights v1")
    stamp = file_stamp(path)
    assert file_sha256(path, unchanged_since=stamp) == file_sha256(path)
    replacement = tmp_path / "new.safetensors"
    replacement.write_bytes(b"weights v2")
    replacement.replace(path)  # as save_artifact does: an atomic rename, a new inode
    with pytest.raises(ValueError, match="changed while it was loaded"):
        file_sha256(path, unchanged_since=stamp)


def test_the_decoder_id_is_stable_within_a_process() -> None:
    assert decoder_id() == decoder_id()
    assert len(decoder_id()) == 16 and int(decoder_id(), 16) >= 0


def test_raw_uploads_hash_as_the_feature_store_says() -> None:
    upload = RawUpload(bytes(2 * 4 * 4), count=2, height=4, width=4, channels=1, fps=5.0)
    assert upload.content_sha256() == raw_frames_sha256(
        bytes(32), count=2, height=4, width=4, channels=1, fps=5.0
    )
    with pytest.raises(InvalidInput, match="needs 96"):
        RawUpload(bytes(32), count=2, height=4, width=4, channels=3, fps=0.0).decode()
