"""Decode a manifest's videos once, in parallel, and keep their frames cropped and resized."""

from __future__ import annotations

import dataclasses
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from tqdm import tqdm

from lus.video import DecodedVideo, decode_video
from lus.video.preprocess import resize_frames
from lus.video.region import CropMode, crop_frames


def _load(path: Path, size: int, crop: CropMode) -> DecodedVideo:
    video = crop_frames(decode_video(path), crop)
    # Resizing before sampling keeps memory small; sampling then picks from same-size frames.
    # replace() keeps the video's crop record, so make_clips does not crop a second time.
    return dataclasses.replace(video, frames=resize_frames(video.frames, size))


def decode_all(
    paths: list[Path],
    *,
    size: int,
    crop: CropMode = "none",
    workers: int = 2,
    progress: bool = True,
) -> list[DecodedVideo]:
    with ThreadPoolExecutor(max_workers=workers) as pool:
        jobs = pool.map(lambda p: _load(p, size, crop), paths)
        return list(tqdm(jobs, total=len(paths), desc="decode", unit="video", disable=not progress))
