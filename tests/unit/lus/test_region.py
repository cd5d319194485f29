"""Cropping to the ultrasound imaging region: DICOM regions, the pixel heuristic, InputSpec."""

from __future__ import annotations

import csv
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

from lus.synthetic import render_frames, sample_case
from lus.synthetic.style import sample_style
from lus.video import CropBox, DecodedVideo, InputSpec, Region, crop_frames, decode_video
from lus.video.region import box_from_regions, find_crop
from lus.video.region_heuristic import find_imaging_box

HEIGHT, WIDTH = 240, 320


def speckle(rng: np.random.Generator, count: int, height: int, width: int) -> np.ndarray:
    """Tissue-like frames: a depth-attenuated echo with speckle that changes every frame."""
    echo = 40 + 120 * np.exp(-np.linspace(0, 2.5, height))[:, None] * np.ones((1, width))
    grain = rng.rayleigh(0.6, size=(count, height, width))
    return np.clip(echo[None] * grain, 0, 255)


def burn_in_overlays(frames: np.ndarray) -> None:
    """Static scanner graphics outside the image: text, grayscale bar, depth ruler, logo."""
    text_rows = [(6, 14), (18, 26), (30, 38)]
    for top, bottom in text_rows:  # lines of "text": thin strokes in a 1-px-wide pattern
        for x in range(6, 70, 4):
            frames[:, top:bottom, x] = 230
            frames[:, top, x : x + 3] = 230
    frames[:, 60:200, 300:310] = np.linspace(255, 0, 140)[None, :, None]  # grayscale bar
    frames[:, 40:230:12, 290:294] = 200  # depth ruler ticks
    frames[:, 215:232, 6:40] = 180  # a logo in the corner
    frames[:, 222:226, 120:200] = 220  # a caption line under the image


def convex_video(seed: int = 0, count: int = 20) -> tuple[np.ndarray, CropBox]:
    """A sector below an apex above the frame, with overlays; returns frames and the true box."""
    rng = np.random.default_rng(seed)
    frames = np.zeros((count, HEIGHT, WIDTH))
    y, x = np.mgrid[0:HEIGHT, 0:WIDTH]
    apex_x, apex_y, half_angle = 160.0, -40.0, np.radians(32)
    radius = np.hypot(x - apex_x, y - apex_y)
    angle = np.abs(np.arctan2(x - apex_x, y - apex_y))
    sector = (angle <= half_angle) & (radius >= 60) & (radius <= 250)
    frames[:] = speckle(rng, count, HEIGHT, WIDTH) * sector[None]
    burn_in_overlays(frames)
    rows, cols = np.flatnonzero(sector.any(1)), np.flatnonzero(sector.any(0))
    box = CropBox(int(cols[0]), int(rows[0]), int(cols[-1]) + 1, int(rows[-1]) + 1)
    return frames.astype(np.uint8), box


def linear_video(seed: int = 0, count: int = 20) -> tuple[np.ndarray, CropBox]:
    """A rectangle of moving speckle, with overlays; returns frames and the true box."""
    rng = np.random.default_rng(seed)
    frames = np.zeros((count, HEIGHT, WIDTH))
    box = CropBox(x0=90, y0=30, x1=270, y1=210)
    frames[:, box.y0 : box.y1, box.x0 : box.x1] = speckle(rng, count, box.height, box.width)
    burn_in_overlays(frames)
    return frames.astype(np.uint8), box


VideoMaker = Callable[..., tuple[np.ndarray, CropBox]]


def assert_close(found: CropBox, truth: CropBox, tolerance: float = 0.03) -> None:
    slack_x, slack_y = tolerance * WIDTH, tolerance * HEIGHT
    assert abs(found.x0 - truth.x0) <= slack_x and abs(found.x1 - truth.x1) <= slack_x, found
    assert abs(found.y0 - truth.y0) <= slack_y and abs(found.y1 - truth.y1) <= slack_y, found


@pytest.mark.parametrize("make", [convex_video, linear_video])
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_heuristic_finds_the_sector_or_rectangle_and_leaves_the_overlays(
    make: VideoMaker, seed: int
) -> None:
    frames, truth = make(seed)
    assert_close(find_imaging_box(frames), truth)


@pytest.mark.parametrize("make", [convex_video, linear_video])
def test_heuristic_on_a_single_still_frame(make: VideoMaker) -> None:
    """No motion to tell tissue from graphics: thin strokes and the small logo still go."""
    frames, truth = make(0, count=1)
    assert_close(find_imaging_box(frames), truth, tolerance=0.05)


def test_a_small_moving_patch_keeps_the_whole_frame() -> None:
    frames = np.zeros((10, HEIGHT, WIDTH), dtype=np.uint8)
    rng = np.random.default_rng(0)
    frames[:, 100:150, 100:160] = speckle(rng, 10, 50, 60).astype(np.uint8)
    assert find_imaging_box(frames) == CropBox(0, 0, WIDTH, HEIGHT)


def test_black_or_constant_video_keeps_the_whole_frame() -> None:
    for value in (0, 128):
        frames = np.full((5, 64, 80), value, dtype=np.uint8)
        assert find_imaging_box(frames) == CropBox(0, 0, 80, 64)


@pytest.mark.parametrize("fan", [False, True])
def test_auto_crop_is_safe_for_the_synthetic_generator(fan: bool) -> None:
    """Synthetic loops fill the frame (or a wide fan): auto keeps almost all of it."""
    for seed in range(4):
        rng = np.random.default_rng(seed)
        style = replace(sample_style(rng), fan=fan)
        frames = render_frames(sample_case(rng), rng, frames=16, height=64, width=64, style=style)
        box = find_imaging_box(frames)
        kept = box.area / (64 * 64)
        assert kept >= (0.85 if fan else 0.97), (seed, box)


# --- DICOM regions ----------------------------------------------------------------------


def region(x0: int, y0: int, x1: int, y1: int, spatial: int = 1, data: int = 1) -> Region:
    return Region(box=CropBox(x0, y0, x1, y1), spatial_format=spatial, data_type=data)


def test_largest_2d_tissue_region_wins() -> None:
    regions = (
        region(0, 0, 100, 60, spatial=3, data=3),  # spectral Doppler, not 2D
        region(10, 60, 60, 100),  # small tissue view
        region(60, 60, 150, 118),  # larger tissue view (dual layout)
        region(70, 70, 140, 110, data=2),  # colour flow inside it
    )
    assert box_from_regions(regions, 120, 160) == CropBox(60, 60, 150, 118)


def test_without_tissue_regions_the_largest_2d_region_is_taken() -> None:
    regions = (region(0, 0, 80, 60, data=2), region(0, 60, 160, 120, data=2))
    assert box_from_regions(regions, 120, 160) == CropBox(0, 60, 160, 120)


def test_regions_that_do_not_fit_or_are_tiny_are_distrusted() -> None:
    assert box_from_regions((region(0, 0, 640, 480),), 240, 320) is None
    assert box_from_regions((region(0, 0, 10, 10),), 240, 320) is None
    assert box_from_regions((region(0, 0, 321, 241),), 240, 320) == CropBox(0, 0, 320, 240)
    assert box_from_regions((), 240, 320) is None


def test_find_crop_prefers_regions_and_falls_back_to_the_heuristic() -> None:
    frames, truth = linear_video()
    video = DecodedVideo(frames=frames, fps=20.0, regions=(region(80, 20, 280, 220),))
    assert find_crop(video) == CropBox(80, 20, 280, 220)
    assert_close(find_crop(replace(video, regions=(region(0, 0, 900, 900),))), truth)


# --- crop_frames and InputSpec ------------------------------------------------------------


def test_crop_frames_cuts_once_and_none_keeps_everything() -> None:
    frames, _ = linear_video()
    video = DecodedVideo(frames=frames, fps=20.0, sop_instance_uid="1.2.3")
    assert crop_frames(video, "none") is video
    cropped = crop_frames(video, "auto")
    assert cropped.crop is not None and cropped.sop_instance_uid == "1.2.3"
    assert cropped.frames.shape == (20, cropped.crop.height, cropped.crop.width)
    assert crop_frames(cropped, "auto") is cropped  # already cropped: not cropped again
    with pytest.raises(ValueError, match="none, auto"):
        crop_frames(video, "tight")


def test_input_spec_carries_the_crop_and_reads_old_artifacts() -> None:
    spec = InputSpec(frames_per_clip=8, size=64, clips=2, crop="auto")
    assert InputSpec.from_dict(spec.to_dict()) == spec
    old = spec.to_dict()
    del old["crop"]  # an artifact written before cropping existed
    assert InputSpec.from_dict(old).crop == "none"
    assert InputSpec().crop == "none"
    with pytest.raises(ValueError, match="crop mode"):
        InputSpec(crop="tight")  # type: ignore[arg-type]


# --- real videos ---------------------------------------------------------------------------


def black_margins(frames: np.ndarray) -> dict[str, int]:
    """Depth in pixels of the all-black strip at each side (dark in every frame)."""
    dark = frames.max(axis=0) <= 8
    rows, cols = dark.all(axis=1), dark.all(axis=0)

    def run(flags: np.ndarray) -> int:
        return int(np.argmin(flags)) if not flags.all() else len(flags)

    return {
        "top": run(rows),
        "bottom": run(rows[::-1]),
        "left": run(cols),
        "right": run(cols[::-1]),
    }


def test_real_pocus_crops_keep_the_image_and_drop_black_margins(pocus_dir: Path) -> None:
    with (pocus_dir / "manifest.csv").open() as handle:
        rows = list(csv.DictReader(handle))
    with_margins = 0
    for row in rows:
        video = decode_video(pocus_dir / row["video"])
        height, width = video.frames.shape[1:]
        box = find_crop(video)
        assert box.area >= 0.30 * height * width, row["video"]
        # Any strip that is black in every frame and at least 3% deep must be mostly cut away.
        margins = black_margins(video.frames)
        cut = {"top": box.y0, "bottom": height - box.y1, "left": box.x0, "right": width - box.x1}
        for side, depth in margins.items():
            size = height if side in ("top", "bottom") else width
            if depth >= 0.03 * size:
                with_margins += 1
                assert cut[side] >= depth // 2, (row["video"], side, depth, box)
    assert with_margins >= 10  # the check above must have had something to check
