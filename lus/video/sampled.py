"""Clips built frame by frame: choose the frames first, reduce each as it is decoded.

:class:`FramePlan` decides, from the frame count and size alone, which frames the model will see
(the deterministic inference sampling of :func:`~lus.video.sampling.clip_indices`) and which
frames the crop heuristic reads. :class:`ClipBuilder` then receives decoded frames in order and
keeps only those: each sampled frame is cropped and resized as soon as the crop box is known, so
no full-size frame outlives the decode of the next unless the crop must still be found in the
pixels. The result equals ``make_clips(crop_frames(decode_video(...)))`` exactly: the same
frames, the same crop, the same resize call on the same pixels.
"""

from __future__ import annotations

import hashlib
import logging
from dataclasses import dataclass, field
from typing import Literal, get_args

import numpy as np

from lus.errors import InvalidInput
from lus.feature_store.base import PIXEL_HASH_ALL_FRAMES, PIXEL_HASH_SAMPLED
from lus.video.limits import DecodeBudget, DecodeLimits
from lus.video.preprocess import InputSpec, resize_frame
from lus.video.region import box_from_regions
from lus.video.region_heuristic import ANALYSIS_FRAMES, find_imaging_box
from lus.video.sampling import clip_indices
from lus.video.types import CropBox, DecodedVideo, Region

log = logging.getLogger(__name__)

HashMode = Literal["sampled", "all", "none"]
"""What :attr:`SampledVideo.pixel_hash` covers.

``"sampled"``: :func:`sampled_pixel_hash`: the sampled frames only (cheap: nothing else is
converted or, for DICOM, decoded). ``"all"``: every decoded frame, the value of
``lus.feature_store.pixel_hash(decode_video(data).frames)``, computed in a stream without keeping
the frames (every frame is converted to gray, and every DICOM frame decoded). ``"none"``: "".
"""

HASH_MODES: tuple[str, ...] = get_args(HashMode)

HASH_SCHEMES: dict[str, str] = {
    "sampled": PIXEL_HASH_SAMPLED,
    "all": PIXEL_HASH_ALL_FRAMES,
    "none": "",
}
"""The name each hash mode's pixel hash is recorded under (``StoredVector.pixel_hash_scheme``)."""

SAMPLED_HASH_TAG = b"lus.video sampled-pixel-hash v1\n"
"""First bytes hashed by :func:`sampled_pixel_hash`; a new definition gets a new tag."""


def check_hash_mode(mode: str) -> HashMode:
    if mode not in HASH_MODES:
        raise ValueError(f"hash mode {mode!r} is not one of {', '.join(HASH_MODES)}")
    return mode  # type: ignore[return-value]


def analysis_indices(num_frames: int) -> tuple[int, ...]:
    """The frames the crop heuristic reads: those ``region_heuristic._mean_and_std`` picks.

    The heuristic reads only these, so running it on a stack of just these frames gives the same
    box as on the whole video (the stack's own picks are then all of its frames).
    """
    picks = np.linspace(0, num_frames - 1, min(num_frames, ANALYSIS_FRAMES)).round()
    return tuple(int(i) for i in np.unique(picks.astype(int)))


@dataclass(frozen=True)
class FramePlan:
    """Which frames to keep for one video, decided before decoding.

    Attributes:
        num_frames, height, width: The video as decoded, before any crop.
        indices: ``(clips, frames_per_clip)`` sampled frame indices.
        sampled: The distinct sampled indices, ascending.
        analysis: The frames the crop heuristic (and ``lus.video.adequacy``) reads, kept at full
            size: when the crop must be found in the pixels, or when asked for
            (``keep_analysis``); else empty.
        box_known: The crop is known before decoding (no crop, a DICOM region, or cropped
            already); else it is found in the analysis frames once they are all decoded.
        box: The crop to cut from every sampled frame when ``box_known`` (``None``: none).
        crop_mode: The spec's crop mode.
        already_cropped: The frames were cut before (a :class:`DecodedVideo` with ``crop``), so
            they are not cut again and this box is reported.
    """

    num_frames: int
    height: int
    width: int
    indices: np.ndarray
    sampled: tuple[int, ...]
    analysis: tuple[int, ...]
    box_known: bool
    box: CropBox | None
    crop_mode: str
    already_cropped: CropBox | None = None

    @classmethod
    def make(
        cls,
        num_frames: int,
        height: int,
        width: int,
        spec: InputSpec,
        regions: tuple[Region, ...] = (),
        *,
        already_cropped: CropBox | None = None,
        keep_analysis: bool = False,
    ) -> FramePlan:
        indices = clip_indices(num_frames, spec.frames_per_clip, spec.clips)
        sampled = tuple(int(i) for i in np.unique(indices))
        box: CropBox | None = None
        box_known = True
        if spec.crop == "auto" and already_cropped is None:
            box = box_from_regions(regions, height, width)
            if box is None:
                if regions:  # as region.find_crop says it
                    log.info(
                        "DICOM ultrasound regions give no usable 2D region; using the heuristic"
                    )
                box_known = False
        keep = keep_analysis or not box_known
        analysis = analysis_indices(num_frames) if keep else ()
        return cls(
            num_frames=num_frames,
            height=height,
            width=width,
            indices=indices,
            sampled=sampled,
            analysis=analysis,
            box_known=box_known,
            box=box,
            crop_mode=spec.crop,
            already_cropped=already_cropped,
        )

    @property
    def needed(self) -> frozenset[int]:
        """Every frame the clips or the crop depend on."""
        return frozenset(self.sampled) | frozenset(self.analysis)

    def held_bytes(self, size: int) -> int:
        """Bytes a :class:`ClipBuilder` holds at most: the analysis frames, the sampled frames
        at full size until the crop is known, the resized frames, and the clips."""
        pixels = self.height * self.width
        full = len(self.analysis) if self.box_known else len(self.needed)
        small = len(self.sampled) * size * size
        clips = int(self.indices.size) * size * size
        return full * pixels + small + clips


@dataclass(frozen=True)
class SampledVideo:
    """Clips ready for the model, and the summary of the video they came from.

    Attributes:
        clips: ``(clips, frames_per_clip, size, size)`` uint8, equal to
            ``make_clips(decode_video(data), spec)``.
        num_frames, height, width: The decoded video, before the crop (as
            ``DecodedVideo.frames.shape``).
        fps: Frame rate from the container or the DICOM timing attributes; 0 if unknown.
        pixel_hash: As the hash mode says (:data:`HashMode`); "" for ``"none"``.
        hash_mode: What ``pixel_hash`` covers.
        indices: The sampled frame indices, ``(clips, frames_per_clip)``.
        crop: The box cut from the frames (``None``: not cropped).
        sop_instance_uid: DICOM SOP Instance UID; ``None`` for other formats.
        regions: DICOM ultrasound regions (frame coordinates before the crop).
        decoded_frames: Frames converted to gray (DICOM: decoded at all) on the last pass; the
            rest were decoded and dropped (video) or never decompressed (DICOM).
        passes: Decoding passes over the file: 2 when it held another number of frames than
            its container said, so the sampling had to be redone.
        reserved_bytes: Decoded bytes reserved for the request (the estimate it was held to).
        threads: Frames decoded in parallel (DICOM) or FFmpeg decoder threads (video).
        analysis_frames: With ``keep_analysis``: the full-size gray frames at
            :func:`analysis_indices` (``(k, height, width)`` uint8), the only frames
            ``lus.video.adequacy`` and the crop heuristic read; else ``None``.
        reduction: JPEG 2000 wavelet levels not decoded (:mod:`lus.video.jpeg2000`): the
            frames the clips, the crop, ``analysis_frames`` and the pixel hash were made from
            are ``2**reduction`` times smaller a side than ``height`` x ``width`` (the file's
            size, as reported); 0: decoded at full size.
    """

    clips: np.ndarray
    num_frames: int
    height: int
    width: int
    fps: float
    pixel_hash: str = ""
    hash_mode: HashMode = "sampled"
    indices: np.ndarray = field(default_factory=lambda: np.zeros((0, 0), dtype=np.int64))
    crop: CropBox | None = None
    sop_instance_uid: str | None = None
    regions: tuple[Region, ...] = ()
    decoded_frames: int = 0
    passes: int = 1
    reserved_bytes: int = 0
    threads: int = 1
    analysis_frames: np.ndarray | None = None
    reduction: int = 0


class ClipBuilder:
    """Takes decoded gray frames in ascending order and keeps only what the clips need.

    Feed it every frame whose index :meth:`wants` (every frame for hash mode ``"all"``, else
    only ``plan.needed``), then call :meth:`finish`.
    """

    def __init__(
        self, plan: FramePlan, size: int, hash_mode: HashMode, *, max_bytes: int | None = None
    ) -> None:
        self.plan = plan
        self.size = size
        self.hash_mode = check_hash_mode(hash_mode)
        self.max_bytes = max_bytes
        self._sampled = frozenset(plan.sampled)
        self._analysis_slot = {index: k for k, index in enumerate(plan.analysis)}
        # Filled in place: stacking a list afterwards would hold every frame twice.
        self._analysis = np.empty(
            (len(plan.analysis), plan.height, plan.width) if plan.analysis else (0, 0, 0),
            dtype=np.uint8,
        )
        self._full: dict[int, np.ndarray] = {}
        self._small: dict[int, np.ndarray] = {}
        self._held = self._analysis.nbytes
        self._last = -1
        self._added: set[int] = set()
        self.seen = 0
        self._digest = hashlib.sha256()
        if self.hash_mode == "all":  # lus.feature_store.pixel_hash: the shape first
            self._digest.update(f"{plan.num_frames}x{plan.height}x{plan.width}".encode())
        elif self.hash_mode == "sampled":
            self._digest.update(SAMPLED_HASH_TAG)
            self._digest.update(f"{plan.num_frames}x{plan.height}x{plan.width}\n".encode())

    @property
    def box_known(self) -> bool:
        return self.plan.box_known

    def wants(self, index: int) -> bool:
        return self.hash_mode == "all" or index in self._sampled or index in self._analysis_slot

    def add(self, index: int, gray: np.ndarray) -> None:
        """One decoded frame: ``(height, width)`` uint8, indices strictly ascending."""
        if index <= self._last:
            raise ValueError(f"frame {index} came after frame {self._last}; feed frames in order")
        if gray.shape != (self.plan.height, self.plan.width) or gray.dtype != np.uint8:
            raise ValueError(
                f"frame {index} is {gray.shape} {gray.dtype}; the plan expects "
                f"({self.plan.height}, {self.plan.width}) uint8"
            )
        self._last = index
        self.seen += 1
        if index in self._sampled or index in self._analysis_slot:
            self._added.add(index)
        gray = np.ascontiguousarray(gray)
        if self.hash_mode == "all":
            self._digest.update(gray.data)
        slot = self._analysis_slot.get(index)
        if slot is not None:
            self._analysis[slot] = gray
            gray = self._analysis[slot]  # share: a frame both sampled and analysed is kept once
        if index not in self._sampled:
            return
        if self.hash_mode == "sampled":
            self._digest.update(f"{index}\n".encode())
            self._digest.update(gray.data)
        if self.box_known:
            self._small[index] = self._reduce(gray, self.plan.box)
            self._held += self._small[index].nbytes
        else:
            self._full[index] = gray
            if slot is None:
                self._held += gray.nbytes
        self._check_held()

    def _reduce(self, gray: np.ndarray, box: CropBox | None) -> np.ndarray:
        if box is not None:  # as crop_frames: slice, then a contiguous copy
            gray = np.ascontiguousarray(gray[box.y0 : box.y1, box.x0 : box.x1])
        return resize_frame(gray, self.size)

    def _check_held(self) -> None:
        if self.max_bytes is not None and self._held > self.max_bytes:
            raise_held(self._held, self.max_bytes)

    def finish(self, *, keep_analysis: bool = False) -> Built:
        """The clips, the crop box applied, the hash, and (``keep_analysis``) the analysis
        frames.

        Raises:
            ValueError: a needed frame never came (the caller decoded fewer frames than planned).
        """
        missing = self.plan.needed - self._added
        if missing:
            raise ValueError(f"frames {sorted(missing)[:5]} were planned but never decoded")
        box = self.plan.already_cropped or self.plan.box
        if not self.box_known:
            box = find_imaging_box(self._analysis)
            for index in sorted(self._full):
                self._small[index] = self._reduce(self._full.pop(index), box)
        analysis = self._analysis if keep_analysis else None
        self._analysis = np.empty((0, 0, 0), dtype=np.uint8)
        if self.hash_mode == "sampled":
            self._digest.update(f"crop {_box_text(box)}\n".encode())
        # As make_clips: each distinct frame resized once, then gathered into the clips.
        stacked = np.stack([self._small[i] for i in self.plan.sampled])
        clips = stacked[np.searchsorted(self.plan.sampled, self.plan.indices)]
        digest = "" if self.hash_mode == "none" else self._digest.hexdigest()
        return Built(clips=clips, box=box, digest=digest, analysis=analysis)


@dataclass(frozen=True)
class Built:
    """What a :class:`ClipBuilder` made."""

    clips: np.ndarray
    box: CropBox | None
    digest: str
    analysis: np.ndarray | None


def _box_text(box: CropBox | None) -> str:
    return "none" if box is None else f"{box.x0},{box.y0},{box.x1},{box.y1}"


def raise_held(held: int, limit: int) -> None:
    """Refuse a decode that holds more than its reservation (a file that lied)."""
    raise InvalidInput(
        f"decoding holds {held} bytes, more than the {limit} bytes reserved for this request "
        "(the file differs from what its header says); send a shorter or smaller clip"
    )


def sampled_pixel_hash(video: DecodedVideo, spec: InputSpec) -> str:
    """The ``"sampled"`` hash of a decoded video, as :func:`decode_clips` computes it.

    sha256 of :data:`SAMPLED_HASH_TAG`, ``"{frames}x{height}x{width}\\n"``, then for each
    distinct sampled index in ascending order ``"{index}\\n"`` and that frame's gray bytes as
    decoded, then ``"crop {x0},{y0},{x1},{y1}\\n"`` (or ``"crop none\\n"``). "As decoded" is
    full size, except for JPEG 2000 DICOM that :func:`~lus.video.decode_clips` decodes at a
    reduced resolution (:mod:`lus.video.jpeg2000`): its hash is of those frames and their size,
    so this function (given full-size frames) gives another value for such a file. Everything the
    model input depends on is covered (the frames, and through the box the frames the crop was
    found from), so a hash with a model version is a sound cache key; two specs with other
    sampling give other hashes for the same file.
    """
    return sample_decoded(video, spec, hash_mode="sampled").pixel_hash


def sample_decoded(
    video: DecodedVideo,
    spec: InputSpec,
    *,
    hash_mode: HashMode = "sampled",
    keep_analysis: bool = False,
) -> SampledVideo:
    """:class:`SampledVideo` of frames already in memory (raw-frame uploads, the trainer).

    Clips equal ``make_clips(video, spec)``; the hash equals what :func:`decode_clips` gives
    for the file these frames were decoded from.
    """
    count, height, width = (int(n) for n in video.frames.shape)
    plan = FramePlan.make(
        count,
        height,
        width,
        spec,
        video.regions,
        already_cropped=video.crop,
        keep_analysis=keep_analysis,
    )
    builder = ClipBuilder(plan, spec.size, hash_mode)
    for index in range(count):
        if builder.wants(index):
            builder.add(index, video.frames[index])
    built = builder.finish(keep_analysis=keep_analysis)
    return SampledVideo(
        clips=built.clips,
        num_frames=count,
        height=height,
        width=width,
        fps=video.fps,
        pixel_hash=built.digest,
        hash_mode=hash_mode,
        indices=plan.indices,
        crop=built.box,
        sop_instance_uid=video.sop_instance_uid,
        regions=video.regions,
        decoded_frames=builder.seen,
        analysis_frames=built.analysis,
    )


@dataclass(frozen=True)
class ClipRequest:
    """What a caller of ``decode_clips`` asked for, passed on to each format's decoding pass."""

    spec: InputSpec
    limits: DecodeLimits
    budget: DecodeBudget | None
    hash_mode: HashMode
    keep_analysis: bool

    def plan(
        self, frames: int, height: int, width: int, regions: tuple[Region, ...] = ()
    ) -> FramePlan:
        return FramePlan.make(
            frames, height, width, self.spec, regions, keep_analysis=self.keep_analysis
        )


__all__ = [
    "HASH_MODES",
    "HASH_SCHEMES",
    "SAMPLED_HASH_TAG",
    "Built",
    "ClipBuilder",
    "ClipRequest",
    "FramePlan",
    "HashMode",
    "SampledVideo",
    "analysis_indices",
    "check_hash_mode",
    "sample_decoded",
    "sampled_pixel_hash",
]
