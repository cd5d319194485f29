"""JPEG 2000 DICOM decoded at a reduced resolution (lus.video.jpeg2000): the level chosen, the
frames it covers, and the clips held to a stated tolerance against the same pixels uncompressed.

Tolerance. The reduced decode keeps the codestream's wavelet low-pass band (LL) at 1/2 or 1/4 of
each side (re-centred on its blocks, ``lus.video.jpeg2000.recentre``), and the resize goes from
there to the model's size; the full-size path resizes the full frame with swscale's bilinear
filter, which widens to the downscale ratio (an area-like average). The two low-pass filters
differ: the LL band lets more fine detail alias through, so speckle and sharp edges (burned-in
text, the sector's rim) come out a little different. With a crop, the box is found or scaled at
the reduced size, so its sides move by up to ``2**level - 1`` full-size pixels, and the whole
clip is resampled a fraction of a pixel differently. Measured on the 4 largest real POCUS clips
(852-864 px, re-encoded as JPEG 2000 lossless): mean 0.2-0.4 gray levels (99th percentile 1-2) at
one level (224 px input), 0.6-0.9 (99th percentile 2-3) at two (112 px input);
``tests/integration/lus/test_decode_pocus.py`` holds them to that. The synthetic speckle here,
smoothed over 4 pixels and so finer for its size than the POCUS clips' (more alias), gave mean
2.2-2.5 and 99th percentile 15 on whole frames, 3.4-4.8 and 21-23 with a crop; it is held to
the bounds below. Every other path stays byte-identical to the old one
(test_decode_dicom_clips.py, with the reduction off).
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import pytest
from pydicom.dataset import Dataset
from pydicom.encaps import generate_fragmented_frames
from pydicom.uid import JPEG2000Lossless
from scipy import ndimage

import lus.video.jpeg2000 as jpeg2000
import tests.unit.lus.test_dicom as cases
from lus.feature_store import pixel_hash
from lus.video import DecodeLimits, InputSpec, decode_clips, decode_video, make_clips
from lus.video.dicom import read_dataset
from lus.video.jpeg2000 import NotReducible, choose_level, read_main_header, recentre

SIDE = 320
SPEC = InputSpec(frames_per_clip=4, size=64, clips=2)
"""320 px frames and a 64 px input: two levels (80 px) keep the input size, three (40) do not."""
Regions = tuple[tuple[int, int, int, int, int, int], ...]
REGION: Regions = ((20, 12, 299, 309, 1, 1),)
"""A 2D tissue region of 280 x 298 pixels (inclusive maxima)."""
FULL = DecodeLimits(reduce_jpeg2000=False)

TOLERANCE = {"none": (3.5, 20.0), "auto": (6.0, 30.0)}
"""Crop mode -> (mean, 99th percentile) absolute difference in gray levels allowed."""


def speckle(count: int, side: int = SIDE, *, seed: int = 0) -> np.ndarray:
    """Ultrasound-like gray frames: speckle (noise smoothed over a few pixels, as a scanner's
    point-spread function does) in a sector that drifts down a row a frame, black margins, a
    burned-in label."""
    rng = np.random.default_rng(seed)
    texture = ndimage.gaussian_filter(rng.random((side + count, side)).astype(np.float32), 4)
    texture = (texture - texture.mean()) / texture.std() * 40 + 110
    y, x = np.mgrid[0:side, 0:side]
    sector = (np.abs(np.arctan2(x - side / 2, y + side * 0.1)) < 0.6) & (y > side * 0.1)
    frames = np.zeros((count, side, side), dtype=np.uint8)
    for i in range(count):
        image = np.clip(texture[i : i + side], 0, 255)
        frames[i] = np.where(sector, image, 0).astype(np.uint8)
        frames[i, 8:14, 8:60] = 230
    return frames


def j2k(pixels: np.ndarray, *, photometric: str = "MONOCHROME2", regions: Regions = ()) -> bytes:
    ds = cases.us_dataset(pixels, photometric=photometric, regions=regions)
    ds.compress(JPEG2000Lossless)
    return cases.to_bytes(ds)


def uncompressed(
    pixels: np.ndarray, *, photometric: str = "MONOCHROME2", regions: Regions = ()
) -> bytes:
    return cases.to_bytes(cases.us_dataset(pixels, photometric=photometric, regions=regions))


def colour(gray: np.ndarray) -> np.ndarray:
    """RGB frames whose luma is close to ``gray`` (a tinted sector)."""
    rgb = np.stack([gray, gray, gray], axis=-1).astype(np.int16)
    rgb[..., 0] += 10
    rgb[..., 2] -= 10
    return np.clip(rgb, 0, 255).astype(np.uint8)


def assert_within_tolerance(reduced: np.ndarray, full: np.ndarray, crop: str) -> None:
    mean, p99 = TOLERANCE[crop]
    gap = np.abs(reduced.astype(np.int16) - full.astype(np.int16))
    assert reduced.shape == full.shape
    assert gap.mean() <= mean, gap.mean()
    assert np.percentile(gap, 99) <= p99, np.percentile(gap, 99)


# --- the clips -------------------------------------------------------------------------------


@pytest.mark.parametrize("rgb", [False, True])
@pytest.mark.parametrize(
    ("crop", "regions", "level"),
    [("none", (), 2), ("auto", REGION, 2), ("auto", (), 1)],
    ids=["whole-frame", "dicom-region", "heuristic-crop"],
)
def test_reduced_clips_agree_with_the_same_pixels_uncompressed(
    rgb: bool, crop: str, regions: Regions, level: int
) -> None:
    gray = speckle(24)
    pixels = colour(gray) if rgb else gray
    photometric = "RGB" if rgb else "MONOCHROME2"
    spec = InputSpec(frames_per_clip=4, size=64, clips=2, crop=crop)  # type: ignore[arg-type]
    reduced = decode_clips(j2k(pixels, photometric=photometric, regions=regions), spec)
    full = decode_clips(uncompressed(pixels, photometric=photometric, regions=regions), spec)
    assert reduced.reduction == level and full.reduction == 0
    assert_within_tolerance(reduced.clips, full.clips, crop)
    # The summary is the file's, whatever resolution was decoded.
    assert (reduced.num_frames, reduced.height, reduced.width) == (24, SIDE, SIDE)
    assert reduced.fps == full.fps and reduced.regions == full.regions
    if crop == "auto":  # the crop is found at the reduced size, in its coordinates
        assert reduced.crop is not None and full.crop is not None
        factor = 1 << level
        for ours, theirs in zip(
            (reduced.crop.x0, reduced.crop.y0, reduced.crop.x1, reduced.crop.y1),
            (full.crop.x0, full.crop.y0, full.crop.x1, full.crop.y1),
            strict=True,
        ):
            assert abs(ours * factor - theirs) <= 2 * factor


def test_only_the_sampled_frames_are_decoded_and_at_the_reduced_size(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    data = j2k(speckle(40))
    sizes: list[tuple[int, ...]] = []
    original = jpeg2000.Reduction.decode

    def spy(self: jpeg2000.Reduction, codestream: bytes) -> tuple[np.ndarray, dict[str, str | int]]:
        array, props = original(self, codestream)
        sizes.append(array.shape)
        return array, props

    monkeypatch.setattr(jpeg2000.Reduction, "decode", spy)
    result = decode_clips(data, SPEC)
    assert result.reduction == 2 and result.decoded_frames == len(sizes) == 8
    assert set(sizes) == {(SIDE // 4, SIDE // 4)}
    assert result.clips.shape == (2, 4, 64, 64)


def test_the_reduced_hash_is_that_of_the_reduced_frames_and_differs_from_full_size() -> None:
    data = j2k(speckle(20))
    reduced = decode_clips(data, SPEC)
    again = decode_clips(data, SPEC, DecodeLimits(threads=1))
    full = decode_clips(data, SPEC, FULL)
    assert reduced.pixel_hash == again.pixel_hash  # deterministic, whatever the threads
    np.testing.assert_array_equal(reduced.clips, again.clips)
    assert reduced.pixel_hash != full.pixel_hash  # other pixels went to the model


def test_turned_off_and_the_every_frame_hash_decode_at_full_size() -> None:
    data = j2k(speckle(20))
    old = decode_video(data)
    off = decode_clips(data, SPEC, FULL)
    assert off.reduction == 0
    np.testing.assert_array_equal(off.clips, make_clips(old, SPEC))
    every = decode_clips(data, SPEC, hash_mode="all")  # the legacy hash is of full-size frames
    assert every.reduction == 0 and every.pixel_hash == pixel_hash(old.frames)
    np.testing.assert_array_equal(every.clips, make_clips(old, SPEC))


def test_a_frame_that_cannot_be_reduced_sends_the_file_to_full_size(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    data = j2k(speckle(20))
    original = jpeg2000.Reduction.decode
    calls = [0]

    def third_fails(
        self: jpeg2000.Reduction, codestream: bytes
    ) -> tuple[np.ndarray, dict[str, str | int]]:
        calls[0] += 1
        if calls[0] == 3:
            raise NotReducible("coded otherwise")
        return original(self, codestream)

    monkeypatch.setattr(jpeg2000.Reduction, "decode", third_fails)
    result = decode_clips(data, SPEC)
    assert result.reduction == 0
    np.testing.assert_array_equal(result.clips, make_clips(decode_video(data), SPEC))


def _twelve_bit_j2k() -> bytes:
    pixels = speckle(8).astype(np.uint16) * 16
    ds = cases.us_dataset(pixels, bits=12)
    ds.compress(JPEG2000Lossless)
    return cases.to_bytes(ds)


@pytest.mark.parametrize(
    ("make", "why"),
    [
        (_twelve_bit_j2k, "12-bit"),
        (lambda: j2k(speckle(8, 96)), "too small: 48 px < 64"),
    ],
    ids=["12-bit", "small"],
)
def test_files_that_are_not_reduced_decode_as_before(make: Callable[[], bytes], why: str) -> None:
    data = make()
    result = decode_clips(data, SPEC)
    assert result.reduction == 0, why
    np.testing.assert_array_equal(result.clips, make_clips(decode_video(data), SPEC))


# --- the level -------------------------------------------------------------------------------


def test_the_level_keeps_the_input_size_and_pillows_rounding() -> None:
    assert choose_level(1080, 1080, 224) == 2  # 270 px; 135 would be too few
    assert choose_level(1080, 1080, 224, levels=1) == 1  # the codestream has one level only
    assert choose_level(600, 800, 224) == 1  # 300 x 400; 150 too few
    assert choose_level(200, 200, 224) == 0
    # 1077 / 4: OpenJPEG gives 270 columns, Pillow allocates 269 and refuses to load: one level.
    assert choose_level(803, 1077, 200) == 1


def test_the_main_header_gives_size_and_levels() -> None:
    ds: Dataset = read_dataset(j2k(speckle(2)))
    first = b"".join(next(generate_fragmented_frames(ds.PixelData, number_of_frames=2)))
    header = read_main_header(first)
    assert header is not None
    assert (header.height, header.width, header.origin_zero) == (SIDE, SIDE, True)
    assert 2 <= header.levels <= 6
    assert read_main_header(b"\xff\xd8\xff\xe0 not a J2K codestream") is None
    assert read_main_header(first[:20]) is None  # cut inside SIZ


def test_recentring_moves_the_samples_to_the_middle_of_their_blocks() -> None:
    """A ramp of 8 gray levels per sample: at level 2 each sample moves 3/8 of a sample (1.5
    full-size pixels) towards the next, i.e. 3 gray levels up; the last row and column stay."""
    ramp = np.tile(np.arange(0, 80, 8, dtype=np.uint8), (4, 1))
    moved = recentre(ramp, 2).astype(int)
    np.testing.assert_array_equal(moved[:, :-1], ramp[:, :-1].astype(int) + 3)
    np.testing.assert_array_equal(moved[:, -1], ramp[:, -1])
    assert recentre(ramp, 0) is ramp
