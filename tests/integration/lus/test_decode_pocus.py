"""decode_clips on the real POCUS clips (../shared/data/pocus): the old path's answers, exactly.

Tolerance: none. The new path converts the same decoded frames with the same calls (FFmpeg's
gray conversion, the same crop, the same swscale resize of the same pixels), so clips are
compared byte for byte, and with ``hash_mode="all"`` so is the pixel hash.
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
