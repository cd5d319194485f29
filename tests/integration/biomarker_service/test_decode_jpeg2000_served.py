"""The served pixel hash since issue 12 (``"sampled-v1"``), with JPEG 2000 DICOM decoded reduced
and at full size: a child server process, real gRPC, a client computing the same hash locally.

The client needs the served input spec for the hash (``GetModelInfo``); with it, a re-export of a
video (other bytes, same pixels) is found by ``Lookup`` without an upload. A server that decodes
JPEG 2000 at full size (``LUS_BIOMARKER_DECODE_JPEG2000_REDUCED=false``) hashes other pixels, so
its hash differs; neither is the every-frame hash of before.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from pydicom.uid import UID, JPEG2000Lossless

import tests.unit.lus.test_dicom as cases
from lus.clients.biomarker import BiomarkerClient, every_frame_pixel_hash, local_pixel_hash
from lus.feature_store import PIXEL_HASH_SAMPLED, SqliteFeatureStore
from lus.video import DecodeLimits, InputSpec, decode_clips
from tests.fakes import untrained_artifact
from tests.processes import BIOMARKER_PORT, server_process
from tests.unit.lus.test_decode_jpeg2000 import speckle

SPEC = InputSpec(frames_per_clip=4, size=64, clips=2)
"""320 px frames and a 64 px input: JPEG 2000 is decoded two levels down (80 px)."""
WAIT_S = 120.0


def jpeg2000_dicom(uid: str) -> bytes:
    ds = cases.us_dataset(speckle(24))
    ds.SOPInstanceUID = UID(uid)
    ds.file_meta.MediaStorageSOPInstanceUID = UID(uid)
    ds.compress(JPEG2000Lossless)
    return cases.to_bytes(ds)


@pytest.fixture(scope="module")
def servers(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, tuple[int, Path]]]:
    """{"reduced": (port, store), "full": (port, store)}: the default server and one decoding
    JPEG 2000 at full size, each with its own SQLite feature store."""
    root = tmp_path_factory.mktemp("j2k-served")
    artifact = untrained_artifact(root / "m.safetensors", spec=SPEC, version="j2k", width=4)
    running: dict[str, tuple[int, Path]] = {}
    with server_process(
        "biomarker_service", _env(artifact, root / "reduced.sqlite"), BIOMARKER_PORT
    ) as reduced:
        full_env = _env(artifact, root / "full.sqlite")
        full_env["LUS_BIOMARKER_DECODE_JPEG2000_REDUCED"] = "false"
        with server_process("biomarker_service", full_env, BIOMARKER_PORT) as full:
            running["reduced"] = (reduced.ports["grpc"], root / "reduced.sqlite")
            running["full"] = (full.ports["grpc"], root / "full.sqlite")
            yield running


def _env(artifact: Path, store: Path) -> dict[str, str]:
    return {
        "LUS_BIOMARKER_ARTIFACT": str(artifact),
        "LUS_BIOMARKER_PORT": "0",
        "LUS_BIOMARKER_DEVICE": "cpu",
        "LUS_BIOMARKER_FEATURE_STORE": "sqlite",
        "LUS_BIOMARKER_FEATURE_STORE_PATH": str(store),
        "LUS_BIOMARKER_AUDIT_SINK": "none",
    }


def test_client_and_server_agree_on_the_sampled_hash_and_a_re_export_is_found(
    servers: dict[str, tuple[int, Path]],
) -> None:
    port, store_path = servers["reduced"]
    data = jpeg2000_dicom("1.2.826.0.1.3680043.10.777.1")
    re_export = jpeg2000_dicom("1.2.826.0.1.3680043.10.777.2")  # other bytes, same pixels
    assert re_export != data
    with BiomarkerClient(f"127.0.0.1:{port}", timeout_s=WAIT_S) as client:
        reply = client.extract_bytes(data)
        spec = client.served_spec()
        assert spec.frames_per_clip == SPEC.frames_per_clip and spec.size == SPEC.size
        local = local_pixel_hash(re_export, spec)
        found = client.lookup(pixel_hash=local)
    assert not reply.cached
    assert reply.pixel_hash == local == decode_clips(data, SPEC).pixel_hash
    assert reply.pixel_hash != every_frame_pixel_hash(data)
    assert found is not None and found.cached
    assert list(found.vector.values) == list(reply.vector.values)
    stored = SqliteFeatureStore(store_path).get(reply.pixel_hash)
    assert stored is not None and stored.pixel_hash_scheme == PIXEL_HASH_SAMPLED


def test_a_server_decoding_jpeg2000_at_full_size_hashes_the_full_size_frames(
    servers: dict[str, tuple[int, Path]],
) -> None:
    data = jpeg2000_dicom("1.2.826.0.1.3680043.10.777.3")
    hashes = {}
    for name, (port, _) in servers.items():
        with BiomarkerClient(f"127.0.0.1:{port}", timeout_s=WAIT_S, hash_first=False) as client:
            hashes[name] = client.extract_bytes(data).pixel_hash
    full = DecodeLimits(reduce_jpeg2000=False)
    assert hashes["full"] == decode_clips(data, SPEC, full).pixel_hash
    assert hashes["reduced"] == decode_clips(data, SPEC).pixel_hash
    assert hashes["full"] != hashes["reduced"]
