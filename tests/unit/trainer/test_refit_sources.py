"""The refit's biomarker-tier source: the feature store first, then the video file found in the
manifest by its bytes, its name or its pixels; every miss says why."""

from __future__ import annotations

import hashlib
from pathlib import Path

import grpc
import pytest

from expert_service.training_set import file_name_sha256
from lus.biomarker.v1 import biomarker_service_pb2 as pb
from lus.biomarker.v1 import schema_pb2
from lus.errors import InvalidInput
from trainer.refit import ExampleRef, VectorUnavailable
from trainer.refit_sources import BiomarkerVectorSource, VideoIndex

MODEL = "next-model.v2"


def _sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _reply(value: float, *, cached: bool, pixel: str = "") -> pb.ExtractResponse:
    return pb.ExtractResponse(
        vector=schema_pb2.BiomarkerVector(
            schema_id="s@1", values=[value, value], model=schema_pb2.ModelRef(version=MODEL)
        ),
        pixel_hash=pixel,
        cached=cached,
    )


class _Refused(grpc.RpcError, grpc.Call):  # type: ignore[misc]
    def __init__(self, code: grpc.StatusCode, details: str) -> None:
        self._code, self._details = code, details

    def code(self) -> grpc.StatusCode:
        return self._code

    def details(self) -> str:
        return self._details


class FakeTier:
    """Stores vectors by pixel hash; extracts files it is sent (refusing ``bad`` bytes)."""

    def __init__(self, stored: dict[str, float], bad: bytes = b"") -> None:
        self.stored = stored
        self.bad = bad
        self.calls: list[tuple[str, str]] = []

    def lookup(
        self, *, pixel_hash: str = "", content_sha256: str = "", model_version: str = ""
    ) -> pb.ExtractResponse | None:
        self.calls.append(("lookup", model_version))
        value = self.stored.get(pixel_hash)
        return None if value is None else _reply(value, cached=True, pixel=pixel_hash)

    def extract_bytes(self, data: bytes, *, model_version: str = "") -> pb.ExtractResponse:
        self.calls.append(("extract", model_version))
        if data == self.bad:
            raise _Refused(grpc.StatusCode.INVALID_ARGUMENT, "insufficient input: no motion")
        if data == b"down":
            raise _Refused(grpc.StatusCode.UNAVAILABLE, "gone")
        return _reply(len(data) / 8, cached=False, pixel=_sha(b"pixels of " + data))


@pytest.fixture
def manifest(tmp_path: Path) -> Path:
    (tmp_path / "videos").mkdir()
    for name, data in {
        "a.mp4": b"aaaa",
        "b.mp4": b"bbbbbb",
        "c.mp4": b"still",
        "d.mp4": b"down",
    }.items():
        (tmp_path / "videos" / name).write_bytes(data)
    path = tmp_path / "manifest.csv"
    path.write_text(
        "video,patient_id\nvideos/a.mp4,p1\nvideos/b.mp4,p2\nvideos/c.mp4,p3\nvideos/d.mp4,p4\n"
        "videos/gone.mp4,p5\n"
    )
    return path


def test_a_stored_vector_is_used_without_any_file() -> None:
    tier = FakeTier({"1" * 64: 0.25})
    got = BiomarkerVectorSource(tier).vector(ExampleRef(0, pixel_hash="1" * 64), MODEL)
    assert (tuple(got.values), got.via, got.model_version) == ((0.25, 0.25), "feature store", MODEL)
    assert tier.calls == [("lookup", MODEL)]


def test_without_a_stored_vector_or_a_file_the_example_is_missing() -> None:
    source = BiomarkerVectorSource(FakeTier({}))
    with pytest.raises(
        VectorUnavailable, match=r"no vector stored for next-model\.v2 and no --videos"
    ):
        source.vector(ExampleRef(0, pixel_hash="2" * 64), MODEL)


def test_files_are_found_by_bytes_or_name_and_extracted_by_the_model(
    manifest: Path, tmp_path: Path
) -> None:
    by_content = ExampleRef(0, content_sha256=_sha(b"aaaa"))
    by_name = ExampleRef(1, name_sha256=file_name_sha256("videos/b.mp4"))
    nowhere = ExampleRef(2, name_sha256=file_name_sha256("videos/other.mp4"))
    index = VideoIndex.from_manifest(manifest, [by_content, by_name, nowhere], progress=False)
    assert index.absent == ["videos/gone.mp4"]
    assert index.find(by_content) == tmp_path / "videos" / "a.mp4"
    assert index.find(by_name) == tmp_path / "videos" / "b.mp4"
    assert index.find(nowhere) is None

    tier = FakeTier({})
    source = BiomarkerVectorSource(tier, index)
    got = source.vector(by_content, MODEL)
    assert (tuple(got.values), got.via) == ((0.5, 0.5), "re-extracted")  # exact in float32
    assert (got.content_sha256, got.pixel_hash) == (_sha(b"aaaa"), _sha(b"pixels of aaaa"))
    assert tier.calls == [("lookup", MODEL), ("extract", MODEL)]
    got = source.vector(by_name, MODEL)
    assert got.content_sha256 == _sha(b"bbbbbb")  # learnt from the file, for the next refit
    assert tier.calls[-1] == ("extract", MODEL)  # no hash to look up: straight to the file
    with pytest.raises(VectorUnavailable, match="no file in --videos matches it"):
        source.vector(nowhere, MODEL)


def test_a_refused_file_is_missing_but_an_unreachable_tier_stops(manifest: Path) -> None:
    still = ExampleRef(0, content_sha256=_sha(b"still"))
    down = ExampleRef(1, content_sha256=_sha(b"down"))
    index = VideoIndex.from_manifest(manifest, progress=False)
    source = BiomarkerVectorSource(FakeTier({}, bad=b"still"), index)
    with pytest.raises(VectorUnavailable, match="refused by the biomarker tier: insufficient"):
        source.vector(still, MODEL)
    with pytest.raises(grpc.RpcError):
        source.vector(down, MODEL)


def test_pixel_hashes_are_decoded_only_for_examples_known_by_them(manifest: Path) -> None:
    decoded: list[str] = []

    def pixels(path: Path) -> str:
        decoded.append(path.name)
        if path.name == "c.mp4":
            raise InvalidInput("cannot decode")
        return _sha(b"pixels of " + path.read_bytes())

    by_content = ExampleRef(0, content_sha256=_sha(b"aaaa"))
    assert VideoIndex.from_manifest(manifest, [by_content], progress=False, pixel_hasher=pixels)
    assert decoded == []  # nothing is known by pixels alone: nothing decoded

    by_pixels = ExampleRef(1, pixel_hash=_sha(b"pixels of down"))
    index = VideoIndex.from_manifest(
        manifest, [by_content, by_pixels], progress=False, pixel_hasher=pixels
    )
    assert decoded == ["b.mp4", "c.mp4", "d.mp4"]  # a.mp4 is matched by its bytes already
    assert index.find(by_pixels) is not None and index.find(by_pixels).name == "d.mp4"  # type: ignore[union-attr]


def test_a_manifest_without_a_video_column_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "m.csv"
    path.write_text("path\nx.mp4\n")
    with pytest.raises(InvalidInput, match="has no 'video' column"):
        VideoIndex.from_manifest(path, progress=False)


def test_a_pixel_hash_column_is_used_as_given(manifest: Path, tmp_path: Path) -> None:
    path = tmp_path / "with_pixels.csv"
    path.write_text(f"video,pixel_hash\nvideos/a.mp4,{'A' * 64}\n")
    index = VideoIndex.from_manifest(path, progress=False, pixel_hasher=lambda p: "never")
    assert index.find(ExampleRef(0, pixel_hash="a" * 64)) == tmp_path / "videos" / "a.mp4"


def test_a_decoded_file_matches_by_either_pixel_hash_scheme(tmp_path: Path) -> None:
    """Training sets made before issue 12 hold every-frame hashes, later ones the sampled hash
    under the tier's model spec: a manifest's file is found by either."""
    from lus.clients.biomarker import every_frame_pixel_hash, local_pixel_hash
    from lus.video import InputSpec
    from tests.fakes import encode_mp4
    from trainer.refit_sources import file_pixel_hasher

    spec = InputSpec(frames_per_clip=4, size=16, clips=2)
    (tmp_path / "videos").mkdir()
    data = encode_mp4(3)
    (tmp_path / "videos" / "a.mp4").write_bytes(data)
    manifest = tmp_path / "manifest.csv"
    manifest.write_text("video\nvideos/a.mp4\n")
    old = ExampleRef(0, pixel_hash=every_frame_pixel_hash(data))
    new = ExampleRef(1, pixel_hash=local_pixel_hash(data, spec))
    assert old.pixel_hash != new.pixel_hash
    assert set(file_pixel_hasher([spec])(tmp_path / "videos" / "a.mp4")) == {
        old.pixel_hash,
        new.pixel_hash,
    }
    for ref in (old, new):
        index = VideoIndex.from_manifest(manifest, [ref], progress=False, specs=[spec])
        assert index.find(ref) == tmp_path / "videos" / "a.mp4"


def test_served_specs_are_those_of_every_served_model() -> None:
    from trainer.refit_sources import served_specs

    class Tier:
        def model_info(self, model_version: str = "") -> pb.ModelInfo:
            frames = {"": 15, "a": 15, "b": 8}[model_version]
            return pb.ModelInfo(
                model=pb.ModelProvenance(model_version="a"),
                served_versions=["a", "b"],
                input=pb.InputSpec(frames_per_clip=frames, height=224, width=224, clips=4),
            )

    specs = served_specs(Tier())
    assert [s.frames_per_clip for s in specs] == [15, 8]
    assert (specs[0].size, specs[0].clips, specs[0].crop) == (224, 4, "none")
