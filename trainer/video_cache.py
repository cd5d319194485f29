"""Decode a manifest's videos once, in parallel, and keep their frames resized for training."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from tqdm import tqdm

from lus.video import DecodedVideo, decode_video
from lus.video.preprocess import resize_frames


def _load(path: Path, size: int) -> DecodedVideo:
    video = decode_video(path)
    # Resizing before sampling keeps memory small; sampling then picks from same-size frames.
    return DecodedVideo(frames=resize_frames(video.frames, size), fps=video.fps)


def decode_all(
    paths: list[Path], *, size: int, workers: int = 2, progress: bool = True
) -> list[DecodedVideo]:
    with ThreadPoolExecutor(max_workers=workers) as pool:
        jobs = pool.map(lambda p: _load(p, size), paths)
        return list(tqdm(jobs, total=len(paths), desc="decode", unit="video", disable=not progress))
