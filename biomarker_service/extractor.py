"""Transport-free core of the GPU tier: video in, biomarker vector (multi-clip average) out."""

from __future__ import annotations

import asyncio
from concurrent.futures import Executor
from dataclasses import dataclass

import numpy as np

from biomarker_service.artifact import ArtifactInfo
from biomarker_service.runner import TorchRunner
from lus.video import DecodedVideo, decode_video, make_clips


@dataclass(frozen=True)
class Extraction:
    """The averaged vector, the per-clip vectors, and what was decoded."""

    vector: np.ndarray
    clip_vectors: np.ndarray
    num_frames: int
    height: int
    width: int
    fps: float


class BiomarkerExtractor:
    """Decodes in a worker pool, samples ``spec.clips`` clips and averages their predictions."""

    def __init__(self, runner: TorchRunner, info: ArtifactInfo, decode_pool: Executor) -> None:
        self.runner = runner
        self.info = info
        self._decode_pool = decode_pool

    def _prepare(self, data: bytes | DecodedVideo) -> tuple[DecodedVideo, np.ndarray]:
        video = decode_video(data) if isinstance(data, bytes) else data
        return video, make_clips(video, self.info.spec)

    async def extract(self, data: bytes | DecodedVideo) -> Extraction:
        loop = asyncio.get_running_loop()
        video, clips = await loop.run_in_executor(self._decode_pool, self._prepare, data)
        clip_vectors = await self.runner.run(clips)
        return self._summarise(video, clip_vectors)

    def extract_sync(self, data: bytes | DecodedVideo) -> Extraction:
        """The same computation without an event loop, for the trainer and the CLI."""
        video, clips = self._prepare(data)
        return self._summarise(video, self.runner.predict(clips))

    @staticmethod
    def _summarise(video: DecodedVideo, clip_vectors: np.ndarray) -> Extraction:
        _, height, width = video.frames.shape
        return Extraction(
            vector=clip_vectors.mean(axis=0),
            clip_vectors=clip_vectors,
            num_frames=video.num_frames,
            height=height,
            width=width,
            fps=video.fps,
        )
