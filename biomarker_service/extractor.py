"""Transport-free core of the GPU tier: video in, biomarker vector (multi-clip average) out.

content sha256 -> stored? -> decode the sampled frames (worker pool) -> input check -> pixel
hash -> stored? -> clips -> batcher -> model -> store.

A stored answer is returned only for the same content: first by the sha256 of the uploaded
bytes (a file seen before is answered without decoding), then by the hash of the decoded pixels
the model's clips come from (a re-export with other headers; ``PIXEL_HASH_MODE``). Never by a
DICOM UID, which modalities and anonymisers reuse.
And only to a caller that owns it (had it computed, ``lus.feature_store`` owners): another
caller's stored vector is computed afresh, so neither the answer, its ``cached`` flag nor its
speed tells a caller whether someone else sent the video.
A reply carries the identifiers of its own request only: its own UID and content hash, the
pixel hash of its own frames. Each video is decoded once, in the pool, so decoding overlaps with
model work on other videos.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import time
from concurrent.futures import Executor
from dataclasses import dataclass
from datetime import UTC, datetime

import numpy as np

from biomarker_service.artifact import ArtifactInfo
from biomarker_service.batcher import DynamicBatcher
from biomarker_service.identity import RawUpload, UnreadableHeader, decoder_id, own_sop_instance_uid
from biomarker_service.lineage import ModelLineage, served_lineage
from biomarker_service.metrics import BiomarkerMetrics
from biomarker_service.model_thread import ModelThread
from lus.clients.sniff import looks_like_dicom
from lus.feature_store import ANONYMOUS, FeatureStore, StoredContent, StoredVector, is_owned_by
from lus.video import (
    DecodeBudget,
    DecodedVideo,
    DecodeLimits,
    HashMode,
    SampledVideo,
    decode_clips,
    sample_decoded,
)
from lus.video.adequacy import REVISION as INPUT_CHECK_REVISION
from lus.video.adequacy import check_adequate
from lus.video.sampled import HASH_SCHEMES

logger = logging.getLogger(__name__)

UNKNOWN_MODEL = ModelLineage("")

PIXEL_HASH_MODE: HashMode = "sampled"
"""The pixel hash covers the frames the model's clips are sampled from (scheme ``"sampled-v1"``,
``lus.video.sampled_pixel_hash``): the decoder then needs no other frame, so a DICOM file's
other frames are never decompressed and a video's never converted (issue 12). Identity of the
upload itself is its sha256 (``content_sha256``), looked up before any decoding. The hash
depends on the model's input spec (frames per clip, clips, crop), so models served with other
specs give other hashes for the same video, and on the decode settings (JPEG 2000 frames are
hashed as decoded, reduced or not). Until issue 12 it was every frame's (``"all-frames"``,
``lus.feature_store.pixel_hash``); vectors stored under those keys stay valid under them
(docs/operations.md, "Pixel hashes")."""

PIXEL_HASH_SCHEME = HASH_SCHEMES[PIXEL_HASH_MODE]
"""Recorded with each stored vector (``StoredVector.pixel_hash_scheme``)."""

Source = bytes | RawUpload | DecodedVideo
"""A file's bytes, raw frames as uploaded, or frames decoded already (trainer, tests)."""


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
    """The request's own DICOM UID (never a stored file's)."""
    model: ModelLineage = UNKNOWN_MODEL
    """The model that computed the vector (for a stored answer: as stored)."""
    content_sha256: str = ""
    """sha256 of the request's own upload; "" for frames handed over decoded."""

    @property
    def model_version(self) -> str:
        return self.model.version


@dataclass(frozen=True)
class _Prepared:
    answer: Extraction | None = None
    """The stored answer, when there is one: nothing left to do."""
    sampled: SampledVideo | None = None
    digest: str = ""
    content_sha256: str = ""
    clips: np.ndarray | None = None


class BiomarkerExtractor:
    """Decodes in a worker pool, samples ``spec.clips`` clips and averages their predictions.

    With a ``batcher`` the clips share forward passes with concurrent requests; with a ``store``
    a video seen before (same bytes or same decoded pixels, same served model) is answered from
    the store. Every clip is checked first (``lus.video.adequacy``): one that lacks what the
    model needs is refused with INVALID_ARGUMENT, from the store or not.
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
        artifact_sha256: str = "",
        decode_limits: DecodeLimits | None = None,
        decode_budget: DecodeBudget | None = None,
    ) -> None:
        """Serve ``runner``'s model.

        Args:
            runner: the thread that runs the backend.
            info: the artifact's metadata: schema, input spec, version, provenance.
            decode_pool: where decoding, hashing and store calls run.
            batcher: shares forward passes between requests; None runs each alone.
            store: answers repeat requests; None computes every answer.
            metrics: the server's metrics; None records none.
            artifact_sha256: sha256 of the artifact file the weights came from (lineage).
            decode_limits: per-request decode limits (frames, pixels, decoded bytes); None =
                ``DecodeLimits()``'s documented defaults.
            decode_budget: decoded bytes shared by all requests of this server; a request
                that does not fit now gets RESOURCE_EXHAUSTED. None = no server-wide bound.
        """
        self.runner = runner
        self.info = info
        self.batcher = batcher
        self.store = store
        self.metrics = metrics
        self._decode_pool = decode_pool
        self.decode_limits = decode_limits or DecodeLimits()
        self.decode_budget = decode_budget
        self.model = served_lineage(info.version, runner.backend, artifact_sha256)
        """What this extractor's vectors are stored under and labelled with."""
        self.decoder = served_decoder_id(self.decode_limits)
        self.min_frames = info.spec.frames_per_clip
        """A shorter clip would repeat frames within a clip, which no training clip did."""

    @property
    def model_version(self) -> str:
        """The served version: the artifact's plus the backend's suffix (e.g. "+int8-static")."""
        return self.model.version

    # -- feature store (blocking calls, run in the pool) ---------------------------------------

    def _usable(self, stored: StoredVector | None, version: str) -> bool:
        """Whether a stored vector may answer for ``version`` of this tier's schema.

        Entries without lineage (written before it was recorded) are not: nobody can say which
        weights and precision made them, or whether their input passed the check. For the served
        version the entry must come from this very artifact file: a version name reused for
        other weights must not answer with the old ones.
        """
        if stored is None or stored.schema_id != self.info.schema.schema_id:
            return False
        if not stored.artifact_sha256:
            return False
        return version != self.model.version or (
            stored.artifact_sha256 == self.model.artifact_sha256
        )

    def _owned(self, pixel_hash: str, version: str, caller: str) -> StoredVector | None:
        """The usable stored vector ``caller`` owns, else None (absent or another's alike)."""
        assert self.store is not None
        if not is_owned_by(self.store, pixel_hash, version, caller):
            return None
        stored = self.store.get(pixel_hash, version)
        return stored if self._usable(stored, version) else None

    def _by_content(
        self, content_sha256: str, version: str, caller: str
    ) -> tuple[StoredContent, StoredVector]:
        """The content entry and the caller's usable vector for these bytes, or ``LookupError``."""
        assert self.store is not None
        content = self.store.get_content(content_sha256, self.decoder)
        if content is None:
            raise LookupError(content_sha256)
        stored = self._owned(content.pixel_hash, version, caller)
        if stored is None:
            raise LookupError(content_sha256)
        return content, stored

    def _store_failed(self) -> None:
        # The store is an optimisation: answer from the model without it.
        logger.warning("feature store call failed; answering without it", exc_info=True)
        self._count_store("error")

    def _store_put(self, result: Extraction, caller: str) -> None:
        if self.store is None:
            return
        item = StoredVector(
            pixel_hash=result.pixel_hash,
            model_version=self.model.version,
            schema_id=self.info.schema.schema_id,
            vector=tuple(float(v) for v in result.vector),
            clip_vectors=tuple(tuple(float(v) for v in c) for c in result.clip_vectors),
            created_at=_now(),
            artifact_sha256=self.model.artifact_sha256,
            precision=self.model.precision,
            input_check=INPUT_CHECK_REVISION,
            pixel_hash_scheme=PIXEL_HASH_SCHEME,
        )
        try:
            self.store.put(item)
            self._add_owner(result.pixel_hash, caller)
        except Exception:
            logger.warning("feature store write failed; answer returned anyway", exc_info=True)
            self._count_store("error")
            return
        self._remember_content(result)

    def _add_owner(self, pixel_hash: str, caller: str) -> None:
        add_owner = getattr(self.store, "add_owner", None)  # stores without owners: none kept
        if add_owner is not None:
            add_owner(pixel_hash, self.model.version, caller)

    def _remember_content(self, result: Extraction) -> None:
        """Note which pixels the request's bytes decoded to, after its vector is stored.

        Written last, so a reader that finds the content entry finds the vector too.
        """
        if self.store is None or not result.content_sha256:
            return
        entry = StoredContent(
            content_sha256=result.content_sha256,
            decoder=self.decoder,
            pixel_hash=result.pixel_hash,
            frames=result.num_frames,
            height=result.height,
            width=result.width,
            fps=result.fps,
            created_at=_now(),
        )
        try:
            self.store.put_content(entry)
        except Exception:
            logger.warning("feature store write failed; answer returned anyway", exc_info=True)
            self._count_store("error")

    def _count_store(self, result: str) -> None:
        if self.metrics is not None:
            self.metrics.count_store(result, self.model.version)

    # -- decode and model -----------------------------------------------------------------------

    def _stored_for_content(
        self, data: Source, content_sha256: str, caller: str
    ) -> Extraction | None:
        """The caller's stored answer for these exact bytes, without decoding them; None on a
        miss."""
        if self.store is None or not content_sha256:
            return None
        try:
            content, stored = self._by_content(content_sha256, self.model.version, caller)
        except LookupError:
            return None
        except Exception:
            self._store_failed()
            return None
        uid = None
        if isinstance(data, bytes) and looks_like_dicom(data):
            try:
                uid = own_sop_instance_uid(data)
            except UnreadableHeader:  # decoding will say what is wrong with the file
                return None
        return _from_store(stored, content, uid=uid, content_sha256=content_sha256)

    def _prepare(self, data: Source, content_sha256: str, caller: str) -> _Prepared:
        if not content_sha256 and isinstance(data, bytes):
            content_sha256 = hashlib.sha256(data).hexdigest()
        elif not content_sha256 and isinstance(data, RawUpload):
            content_sha256 = data.content_sha256()
        answer = self._stored_for_content(data, content_sha256, caller)
        if answer is not None:
            self._count_store("hit")
            return _Prepared(answer=answer)
        started = time.perf_counter()
        sampled = self._sample(data, budget=self.decode_budget)
        digest = sampled.pixel_hash
        stored = None
        if self.store is not None:
            try:
                stored = self._owned(digest, self.model.version, caller)
            except Exception:
                self._store_failed()
        if self.metrics is not None:
            self.metrics.decode_seconds.observe(time.perf_counter() - started)
        uid = sampled.sop_instance_uid or None
        if stored is not None and self._usable(stored, self.model.version):
            self._count_store("hit")
            answer = _from_store(
                stored, _summary(sampled, digest), uid=uid, content_sha256=content_sha256
            )
            self._remember_content(answer)  # same pixels, new bytes: next time without decoding
            return _Prepared(answer=answer)
        if self.store is not None:
            self._count_store("miss")
        return _Prepared(
            sampled=sampled, digest=digest, content_sha256=content_sha256, clips=sampled.clips
        )

    def _sample(self, data: Source, *, budget: DecodeBudget | None) -> SampledVideo:
        """The model's clips, decoding only the sampled frames, then the input check.

        Bytes go through the bounded decoder (frames chosen from the header, each kept frame
        reduced to gray at once, the request's decoded bytes reserved in ``budget``); frames
        already in memory are only sampled. The pixel hash covers the sampled frames (see
        ``PIXEL_HASH_MODE``).
        """
        try:
            if isinstance(data, bytes):
                sampled = decode_clips(
                    data,
                    self.info.spec,
                    self.decode_limits,
                    budget=budget,
                    hash_mode=PIXEL_HASH_MODE,
                    keep_analysis=True,
                )
            else:
                video = data.decode() if isinstance(data, RawUpload) else data
                sampled = sample_decoded(
                    video, self.info.spec, hash_mode=PIXEL_HASH_MODE, keep_analysis=True
                )
            assert sampled.analysis_frames is not None  # asked for with keep_analysis
            # Before any stored answer, too: an inadequate clip gets no answer at all.
            check_adequate(
                DecodedVideo(frames=sampled.analysis_frames, fps=sampled.fps),
                min_frames=self.min_frames,
                frame_count=sampled.num_frames,
            )
        except Exception as err:  # counted by reason, then answered as before
            if self.metrics is not None:
                self.metrics.count_decode_failure(err)
            raise
        return sampled

    async def _run_model(self, clips: np.ndarray, deadline: float | None) -> np.ndarray:
        if self.batcher is not None:
            return await self.batcher.submit(clips, deadline=deadline)
        return await self.runner.run(clips)

    async def extract(
        self,
        data: Source,
        *,
        content_sha256: str = "",
        deadline: float | None = None,
        caller: str = ANONYMOUS,
    ) -> Extraction:
        """The stored answer for the same content, else decode, check, run the model, store.

        Args:
            data: the file's bytes (any format ``decode_video`` reads), raw frames as uploaded,
                or decoded frames.
            content_sha256: sha256 of the upload when the caller hashed it while receiving
                (``ExtractStream``); computed here otherwise (not for decoded frames).
            deadline: ``loop.time()`` after which the caller has given up; the batcher drops
                the video instead of spending model time on it.
            caller: who asks (``biomarker_service.callers``): answered from its own stored
                vectors only, and recorded as an owner of the vector computed for it.

        Raises:
            InvalidInput: the upload cannot be decoded, or the clip falls short of what the
                model needs ("insufficient input: ...").
        """
        loop = asyncio.get_running_loop()
        pool = self._decode_pool
        prepared = await loop.run_in_executor(pool, self._prepare, data, content_sha256, caller)
        if prepared.answer is not None:
            return prepared.answer
        assert prepared.sampled is not None and prepared.clips is not None
        clip_vectors = await self._run_model(prepared.clips, deadline)
        result = self._summarise(
            prepared.sampled,
            clip_vectors,
            digest=prepared.digest,
            content_sha256=prepared.content_sha256,
        )
        if self.store is not None:
            await loop.run_in_executor(pool, self._store_put, result, caller)
        return result

    async def lookup(
        self,
        *,
        content_sha256: str = "",
        digest: str = "",
        model_version: str = "",
        sop_instance_uid: str = "",
        caller: str = ANONYMOUS,
    ) -> Extraction | None:
        """The caller's stored answer for a file's content, without any upload or decoding.

        By ``content_sha256`` first (the reply then has the video summary), else by pixel hash.
        A pixel hash alone answers only entries whose input passed this service's input check
        revision, since there are no frames here to check.

        Args:
            content_sha256: sha256 of the bytes the caller would upload.
            digest: the pixel hash of the decoded frames.
            model_version: served version whose vector is wanted; "" = the one served here.
            sop_instance_uid: the caller's own UID, echoed (metadata: never a key).
            caller: who asks; another caller's vector is answered as absent (None), exactly
                like a vector nobody stored.
        """
        if self.store is None or not (content_sha256 or digest):
            return None
        version = model_version or self.model.version

        def find() -> Extraction | None:
            if content_sha256:
                try:
                    content, stored = self._by_content(content_sha256, version, caller)
                except LookupError:
                    pass
                else:
                    return _from_store(
                        stored, content, uid=sop_instance_uid, content_sha256=content_sha256
                    )
            if digest:
                found = self._owned(digest, version, caller)
                if found is not None and found.input_check == INPUT_CHECK_REVISION:
                    return _from_store(
                        found, None, uid=sop_instance_uid, content_sha256=content_sha256
                    )
            return None

        try:
            result = await asyncio.get_running_loop().run_in_executor(self._decode_pool, find)
        except Exception:
            self._store_failed()
            return None
        self._count_store("hit" if result is not None else "miss")
        return result

    def extract_sync(self, data: bytes | DecodedVideo) -> Extraction:
        """The same computation without an event loop, batcher or store (trainer, CLI)."""
        sampled = self._sample(data, budget=None)
        return self._summarise(
            sampled, self.runner.predict(sampled.clips), digest=sampled.pixel_hash
        )

    def _summarise(
        self,
        video: SampledVideo,
        clip_vectors: np.ndarray,
        *,
        digest: str = "",
        content_sha256: str = "",
    ) -> Extraction:
        return Extraction(
            vector=clip_vectors.mean(axis=0),
            clip_vectors=clip_vectors,
            num_frames=video.num_frames,
            height=video.height,
            width=video.width,
            fps=video.fps,
            pixel_hash=digest,
            sop_instance_uid=video.sop_instance_uid or None,
            model=self.model,
            content_sha256=content_sha256,
        )


def served_decoder_id(limits: DecodeLimits) -> str:
    """The decoder id content entries are stored under: ``decoder_id()``, and another one when
    JPEG 2000 frames are decoded at full size (the same bytes then give other pixels)."""
    base = decoder_id()
    if limits.reduce_jpeg2000:
        return base
    return hashlib.sha256(f"{base} jpeg2000 full size".encode()).hexdigest()[:16]


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="milliseconds")


def _summary(video: SampledVideo, digest: str) -> StoredContent:
    """A decoded video's summary in the shape of a content entry (not stored as such)."""
    return StoredContent("", "", digest, video.num_frames, video.height, video.width, video.fps, "")


def _from_store(
    stored: StoredVector,
    summary: StoredContent | None,
    *,
    uid: str | None,
    content_sha256: str,
) -> Extraction:
    """A stored vector as the answer to one request: its identifiers are the request's own.

    ``summary`` (frames, size, rate) comes from the request's decoded frames or from the content
    entry of its bytes; None leaves it empty (a lookup by pixel hash knows neither).
    """
    return Extraction(
        vector=np.asarray(stored.vector, dtype=np.float32),
        clip_vectors=np.asarray(stored.clip_vectors, dtype=np.float32),
        num_frames=summary.frames if summary else 0,
        height=summary.height if summary else 0,
        width=summary.width if summary else 0,
        fps=summary.fps if summary else 0.0,
        pixel_hash=stored.pixel_hash,
        cached=True,
        sop_instance_uid=uid or None,
        model=ModelLineage(stored.model_version, stored.artifact_sha256, stored.precision),
        content_sha256=content_sha256,
    )
