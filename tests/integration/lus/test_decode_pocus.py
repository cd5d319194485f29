"""decode_clips on the real POCUS clips (../shared/data/pocus): the old path's answers, exactly;
and, re-encoded as JPEG 2000 DICOM, the reduced-resolution decode within stated bounds.

Tolerance: none (except the JPEG 2000 test, whose bounds are stated with it). The new path converts
the same decoded frames with the same calls (FFmpeg's gray conversion, the same crop, the same
swscale resize of the same pixels), so clips are compared byte for byte, and with
``hash_mode="all"`` so is the pixel hash.
"""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np

from lus.feature_store import pixel_hash
from lus.video import InputSpec, decode_clips, decode_video, make_clips, sampled_pixel_hash

PAPER = InputSpec()
CROPPED = InputSpec(crop="auto")


def test_every_pocus_clip_gives_the_old_clips_hash_and_summary(pocus_dir: Path) -> None:
    with (pocus_dir / "manifest.csv").open() as handle:
        rows = list(csv.DictReader(handle))
    assert len(rows) == 90
    for number, row in enumerate(rows):
        data = (pocus_dir / row["video"]).read_bytes()
        old = decode_video(data)
        new = decode_clips(data, PAPER, hash_mode="all")
        np.testing.assert_array_equal(new.clips, make_clips(old, PAPER), err_msg=row["video"])
        assert new.pixel_hash == pixel_hash(old.frames), row["video"]
        assert (new.num_frames, new.height, new.width) == old.frames.shape, row["video"]
        assert new.fps == old.fps, row["video"]
        assert new.num_frames == int(row["frames"]), row["video"]
        if number % 3 == 0:  # the crop heuristic from its own frames only, on a third of them
            cropped = decode_clips(data, CROPPED)
            expected = make_clips(old, CROPPED)
            np.testing.assert_array_equal(cropped.clips, expected, err_msg=row["video"])
            assert cropped.pixel_hash == sampled_pixel_hash(old, CROPPED), row["video"]


# Bounds for the reduced JPEG 2000 decode on real clips (tests/unit/lus/test_decode_jpeg2000.py
# explains the difference): input size -> (levels dropped, mean, 99th percentile), in gray levels.
# Measured on these 4 clips: mean 0.2-0.4 and 99th percentile 1-2 at one level, 0.6-0.9 and 2-3
# at two.
J2K_BOUNDS = {224: (1, 0.6, 3.0), 112: (2, 1.5, 5.0)}


def test_the_largest_pocus_clips_as_jpeg2000_dicom_agree_within_the_stated_bounds(
    pocus_dir: Path,
) -> None:
    """The 4 largest clips (852-864 px a side), 12 frames each, written as JPEG 2000 lossless
    DICOM and uncompressed: the reduced decode's clips against the full-size pixels'."""
    from pydicom.uid import JPEG2000Lossless

    import tests.unit.lus.test_dicom as cases

    with (pocus_dir / "manifest.csv").open() as handle:
        rows = list(csv.DictReader(handle))
    largest = sorted(rows, key=lambda r: -min(int(r["width"]), int(r["height"])))[:4]
    for row in largest:
        frames = decode_video((pocus_dir / row["video"]).read_bytes()).frames
        frames = frames[:: max(1, len(frames) // 12)][:12]
        ds = cases.us_dataset(frames)
        plain = cases.to_bytes(ds)
        ds.compress(JPEG2000Lossless)
        compressed = cases.to_bytes(ds)
        for size, (level, mean, p99) in J2K_BOUNDS.items():
            spec = InputSpec(frames_per_clip=4, size=size, clips=2)
            reduced = decode_clips(compressed, spec)
            full = decode_clips(plain, spec)
            assert reduced.reduction == level, row["video"]
            gap = np.abs(reduced.clips.astype(np.int16) - full.clips.astype(np.int16))
            assert gap.mean() <= mean, (row["video"], size, gap.mean())
            assert np.percentile(gap, 99) <= p99, (row["video"], size, np.percentile(gap, 99))
