"""Transport-free core of the GPU tier: video in, biomarker vector (multi-clip average) out.

decode (worker pool) -> pixel hash -> feature store? -> clips -> batcher -> model -> store.
Each video is decoded once, in the pool, so decoding overlaps with model work on other videos.
"""

from __future__ import annotations

import asyncio
import logging
import time
from concurrent.futures import Executor
from dataclasses import dataclass
from datetime import UTC, datetime

import numpy as np

from biomarker_service.artifact import ArtifactInfo
from biomarker_service.batcher import DynamicBatcher
from biomarker_service.metrics import BiomarkerMetrics
from biomarker_service.model_thread import ModelThread
from lus.feature_store import FeatureStore, StoredVector, pixel_hash
from lus.video import DecodedVideo, decode_video, make_clips

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class Extraction:
    """The averaged vector, the per-clip vectors, what was decoded, and where it came from."""

    vector: np.ndarray
    clip_vectors: np.ndarray
    num_frames: int
    height: int
    width: int
    fps: float
    pixel_hash: str = ""
    cached: bool = False
    """True when the answer came from the feature store, without model work."""
    sop_instance_uid: str | None = None
    model_version: str = ""


@dataclass(frozen=True)
class _Prepared:
    video: DecodedVideo
    pixel_hash: str
    sop_instance_uid: str | None
    stored: StoredVector | None
    clips: np.ndarray | None


class BiomarkerExtractor:
    """Decodes in a worker pool, samples ``spec.clips`` clips and averages their predictions.

    With a ``batcher`` the clips share forward passes with concurrent requests; with a ``store``
    a video seen before (same decoded pixels, same model version) is answered from the store.
    """

    def __init__(
        self,
        runner: ModelThread,
        info: ArtifactInfo,
        decode_pool: Executor,
        *,
        batcher: DynamicBatcher | None = None,
        store: FeatureStore | None = None,
        metrics: BiomarkerMetrics | None = None,
    ) -> None:
        self.runner = runner
        self.info = info
        self.batcher = batcher
        self.store = store
        self.metrics = metrics
        self._decode_pool = decode_pool
        self.model_version = info.version + getattr(runner.backend, "version_suffix", "")
        """The version vectors are stored under; differs from the artifact's for int8 models."""

    # -- feature store (blocking calls, run in the pool) ---------------------------------------

    def _store_get(self, digest: str, uid: str | None) -> StoredVector | None:
        if self.store is None:
            return None
        try:
            found = self.store.find_by_sop_instance_uid(uid, self.model_version) if uid else None
            if found is None or found.pixel_hash != digest:  # a UID re-used for other pixels
                found = self.store.get(digest, self.model_version) if digest else None
        except Exception:  # the store is an optimisation: answer from the model without it
            logger.warning("feature store lookup failed; running the model", exc_info=True)
            self._count_store("error")
            return None
        if found is not None and found.schema_id != self.info.schema.schema_id:
            found = None
        self._count_store("hit" if found is not None else "miss")
        return found

    def _store_put(self, result: Extraction) -> None:
        if self.store is None:
            return
        item = StoredVector(
            pixel_hash=result.pixel_hash,
            model_version=self.model_version,
            schema_id=self.info.schema.schema_id,
            vector=tuple(float(v) for v in result.vector),
            clip_vectors=tuple(tuple(float(v) for v in c) for c in result.clip_vectors),
            created_at=datetime.now(UTC).isoformat(timespec="milliseconds"),
            sop_instance_uid=result.sop_instance_uid,
        )
        try:
            self.store.put(item)
        except Exception:
            logger.warning("feature store write failed; answer returned anyway", exc_info=True)
            self._count_store("error")

    def _count_store(self, result: str) -> None:
        if self.metrics is not None:
            self.metrics.store.labels(result).inc()

    # -- decode and model -----------------------------------------------------------------------

    def _prepare(self, data: bytes | DecodedVideo) -> _Prepared:
        started = time.perf_counter()
        video = decode_video(data) if isinstance(data, bytes) else data
        digest = pixel_hash(video.frames)
        uid = getattr(video, "sop_instance_uid", None) or None
        stored = self._store_get(digest, uid)
        clips = None if stored is not None else make_clips(video, self.info.spec)
        if self.metrics is not None:
            self.metrics.decode_seconds.observe(time.perf_counter() - started)
        return _Prepared(video, digest, uid, stored, clips)

    async def _run_model(self, clips: np.ndarray, deadline: float | None) -> np.ndarray:
        if self.batcher is not None:
            return await self.batcher.submit(clips, deadline=deadline)
        return await self.runner.run(clips)

    async def extract(
        self, data: bytes | DecodedVideo, *, deadline: float | None = None
    ) -> Extraction:
        """Decode (once, in the pool), answer from the store or the model, store the result.

        Args:
            data: the file's bytes (any format ``decode_video`` reads) or decoded frames.
            deadline: ``loop.time()`` after which the caller has given up; the batcher drops
                the video instead of spending model time on it.
        """
        loop = asyncio.get_running_loop()
        prepared = await loop.run_in_executor(self._decode_pool, self._prepare, data)
        if prepared.stored is not None:
            return self._from_store(prepared.stored, prepared.video)
        assert prepared.clips is not None
        clip_vectors = await self._run_model(prepared.clips, deadline)
        result = self._summarise(
            prepared.video,
            clip_vectors,
            digest=prepared.pixel_hash,
            uid=prepared.sop_instance_uid,
            version=self.model_version,
        )
        if self.store is not None:
            await loop.run_in_executor(self._decode_pool, self._store_put, result)
        return result

    async def lookup(self, *, digest: str = "", sop_instance_uid: str = "") -> Extraction | None:
        """The stored answer for a pixel hash or SOP Instance UID, without any upload."""
        if self.store is None or not (digest or sop_instance_uid):
            return None
        loop = asyncio.get_running_loop()
        store = self.store

        def find() -> StoredVector | None:
            found = None
            if sop_instance_uid:
                found = store.find_by_sop_instance_uid(sop_instance_uid, self.model_version)
            if found is None and digest:
                found = store.get(digest, self.model_version)
            return found

        stored = await loop.run_in_executor(self._decode_pool, find)
        self._count_store("hit" if stored is not None else "miss")
        if stored is None or stored.schema_id != self.info.schema.schema_id:
            return None
        return self._from_store(stored, None)

    def extract_sync(self, data: bytes | DecodedVideo) -> Extraction:
        """The same computation without an event loop, batcher or store (trainer, CLI)."""
        video = decode_video(data) if isinstance(data, bytes) else data
        clips = make_clips(video, self.info.spec)
        return self._summarise(video, self.runner.predict(clips), version=self.model_version)

    @staticmethod
    def _summarise(
        video: DecodedVideo,
        clip_vectors: np.ndarray,
        *,
        digest: str = "",
        uid: str | None = None,
        version: str = "",
    ) -> Extraction:
        _, height, width = video.frames.shape
        return Extraction(
            vector=clip_vectors.mean(axis=0),
            clip_vectors=clip_vectors,
            num_frames=video.num_frames,
            height=height,
            width=width,
            fps=video.fps,
            pixel_hash=digest,
            sop_instance_uid=uid,
            model_version=version,
        )

    @staticmethod
    def _from_store(stored: StoredVector, video: DecodedVideo | None) -> Extraction:
        height = width = frames = 0
        fps = 0.0
        if video is not None:
            frames, height, width = (int(n) for n in video.frames.shape)
            fps = video.fps
        return Extraction(
            vector=np.asarray(stored.vector, dtype=np.float32),
            clip_vectors=np.asarray(stored.clip_vectors, dtype=np.float32),
            num_frames=frames,
            height=height,
            width=width,
            fps=fps,
            pixel_hash=stored.pixel_hash,
            cached=True,
            sop_instance_uid=stored.sop_instance_uid,
            model_version=stored.model_version,
        )
