"""Uploads the fuzzer (``benchmarks/soak_fuzz.py``) found to end in INTERNAL on the biomarker tier.

Each must be refused with ``InvalidInput`` (INVALID_ARGUMENT), naming no file content. The
inputs are the smallest edits of a valid seed that reproduce a failure, and the soak cases
themselves (rebuilt from their seed and index; docs/benchmarks.md, Fuzz soak).
"""

from __future__ import annotations

import pytest

pytest.importorskip("av")
pytest.importorskip("pydicom")

from lus.errors import InvalidInput
from lus.video import InputSpec, decode_clips
from tests.fuzz.cases import case_at, uploaded_video
from tests.fuzz.seeds import PHI_MARKERS, video_seeds

SPEC = InputSpec(frames_per_clip=4, size=32, clips=2)


def seed(name: str) -> bytes:
    return next(s.data for s in video_seeds() if s.name == name)


def assert_refused(data: bytes) -> None:
    with pytest.raises(InvalidInput) as refused:
        decode_clips(data, SPEC)
    assert not any(marker in str(refused.value) for marker in PHI_MARKERS)


def test_an_mp4_whose_video_codec_is_unknown_is_refused_as_invalid() -> None:
    # Found as soak case 2687 of seed 2 (mp4-h264 with a chunk deleted), and four more.
    assert_refused(seed("mp4-h264").replace(b"avc1", b"zzzz"))


def test_a_dicom_whose_pixel_data_has_an_unknown_vr_is_refused_as_invalid() -> None:
    # Found as soak case 8332 of seed 2 (a header splice onto a DICOM).
    data = seed("dicom-explicit-le")
    at = data.rfind(b"\xe0\x7f\x10\x00") + 4  # (7FE0,0010) Pixel Data: its VR follows
    assert data[at : at + 2] in (b"OB", b"OW")
    assert_refused(data[:at] + b"O\x7f" + data[at + 2 :])


SOAK_CASES = {
    # (seed, index): what the server raised before the fix, instead of refusing the upload
    (1, 872): "AttributeError: codec_context None (lus/video/pipeline.py _read_header)",
    (2, 2687): "AttributeError: codec_context None (lus/video/pipeline.py _read_header)",
    (1, 45291): "NotImplementedError: unknown VR of Pixel Data (dicom_frames.read_sharing_pixels)",
    (2, 8332): "NotImplementedError: unknown VR of Pixel Data (dicom_frames.read_sharing_pixels)",
    (1, 86660): "TypeError: len(None) of an empty Pixel Data (dicom_frames.read_sharing_pixels)",
}


@pytest.mark.parametrize(("seed", "index"), list(SOAK_CASES))
def test_soak_cases_that_ended_in_internal_are_refused_as_invalid(seed: int, index: int) -> None:
    assert_refused(uploaded_video(case_at(seed, index)))
