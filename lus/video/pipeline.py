"""Uploaded bytes to model clips in bounded memory: :func:`decode_clips`.

The frames are chosen before any is decoded, from the frame count (DICOM Number of Frames, or
the video packets the container holds, counted without decoding) and the spec's deterministic
sampling. DICOM frames are then decompressed only when chosen
(:mod:`lus.video.dicom_frames`). Inter-coded video must be decoded in order, but a frame that is
not chosen is dropped as FFmpeg returns it, never converted; a chosen one is turned to gray and
resized at once. Memory is then bounded by the clips, not by the length of the video.

Where the count turns out wrong (a decoder that drops a damaged packet, a truncated file), the
video is decoded a second time with the count the first pass found: memory stays bounded and the
clips still equal those of decoding everything, at the price of decoding twice such a file.
"""

from __future__ import annotations

import io
from dataclasses import dataclass
from pathlib import Path

import av
import av.container
import av.video.stream

from lus.errors import InvalidInput
from lus.video.dicom import looks_like_dicom
from lus.video.dicom_frames import decode_dicom_clips
from lus.video.gif import read_gif_header
from lus.video.limits import DecodeBudget, DecodeLimits, MemoryEstimate, Reservation, reserve
from lus.video.preprocess import InputSpec
from lus.video.sampled import (
    ClipBuilder,
    ClipRequest,
    FramePlan,
    HashMode,
    SampledVideo,
    check_hash_mode,
)

REFERENCE_FRAMES = {"h264": 16, "hevc": 16, "vp9": 8, "av1": 8, "libdav1d": 8}
"""Frames a decoder may keep as references (H.264/HEVC allow 16); 4 for other codecs (MPEG-4
part 2, MPEG-1/2, MJPEG, GIF keep one or two)."""

SURFACE_SLACK = 1.25
"""FFmpeg pads frame buffers (aligned lines, edges for motion vectors pointing outside)."""

_DECODE_ERRORS = (av.error.FFmpegError, ValueError, EOFError, MemoryError)


@dataclass(frozen=True)
class _StreamHeader:
    """What the container says before decoding: size, rate, codec, and the frames it holds."""

    frames: int
    height: int
    width: int
    fps: float
    codec: str
    bytes_per_pixel: float


def decode_clips(
    source: bytes | Path,
    spec: InputSpec,
    limits: DecodeLimits | None = None,
    *,
    budget: DecodeBudget | None = None,
    hash_mode: HashMode = "sampled",
    keep_analysis: bool = False,
) -> SampledVideo:
    """Decode a DICOM file or a video (MP4, AVI, GIF, MOV, MPEG) straight to model clips.

    The clips equal ``make_clips(decode_video(source), spec)`` (inference sampling), and the
    summary equals what ``decode_video`` would have returned (frame count, size, fps, SOP
    Instance UID, regions), but only the sampled frames (and those the crop heuristic reads)
    are converted, and for DICOM only they are decompressed.

    Args:
        source: The file's bytes or path; the format is probed from the content.
        spec: The model's input (frames per clip, size, clips, crop).
        limits: Per-request limits (default :class:`DecodeLimits`()).
        budget: The server-wide decode budget to reserve this request's bytes in; ``None``:
            only the per-request limits apply.
        hash_mode: What ``pixel_hash`` covers (:data:`~lus.video.sampled.HashMode`).
        keep_analysis: Also return the full-size frames the input check
            (``lus.video.adequacy``) and the crop heuristic read
            (:attr:`SampledVideo.analysis_frames`; up to 32 frames, counted in the budget).

    Raises:
        InvalidInput: empty, unreadable or undecodable data, or a file beyond ``limits``
            (with the numbers); as ``decode_video``.
        Overloaded: ``budget`` has too little free right now (retry later).
    """
    limits = limits or DecodeLimits()
    check_hash_mode(hash_mode)
    data = source.read_bytes() if isinstance(source, Path) else source
    if not data:
        raise InvalidInput(
            "video is empty (0 bytes); send the bytes of a DICOM or MP4/AVI/GIF/MOV/MPEG file"
        )
    if looks_like_dicom(data):
        return decode_dicom_clips(
            data, spec, limits, budget=budget, hash_mode=hash_mode, keep_analysis=keep_analysis
        )
    return _container_clips(data, ClipRequest(spec, limits, budget, hash_mode, keep_analysis))


def _undecodable(err: BaseException) -> InvalidInput:
    return InvalidInput(
        f"could not decode the file as a video ({type(err).__name__}: {err}); "
        "send a DICOM, MP4, AVI, GIF, MOV or MPEG file"
    )


def _video_stream(container: av.container.InputContainer) -> av.video.stream.VideoStream:
    if not container.streams.video:
        raise InvalidInput("no video stream found in the uploaded file")
    stream = container.streams.video[0]
    if stream.codec_context is None:  # PyAV has no decoder for the stream's codec tag
        raise InvalidInput(
            "the video stream's codec is unknown or not supported; send H.264, MPEG-4, MJPEG "
            "or another common codec, or a DICOM file"
        )
    return stream


def _too_many_frames(limit: int) -> InvalidInput:
    return InvalidInput(f"video has more than {limit} frames; send a shorter clip")


def _read_header(data: bytes, limits: DecodeLimits) -> _StreamHeader:
    """The stream's parameters, and its frames counted from the packets (nothing decoded).

    Container frame counts (MP4 sample tables, AVI headers) can be absent or wrong; the
    packets are what the decoder will get. Packets the container marks to discard (before an
    edit list's start) and empty ones give no frame.
    """
    with av.open(io.BytesIO(data), mode="r") as container:
        stream = _video_stream(container)
        context = stream.codec_context
        fps = float(stream.average_rate) if stream.average_rate else 0.0
        # The decoder's pixel format, when the container says it (else 4 bytes, the most an
        # 8-bit format takes).
        pixel_format = context.format
        bits = pixel_format.padded_bits_per_pixel if pixel_format is not None else 32
        frames = 0
        for packet in container.demux(stream):
            if packet.size and not packet.is_discard:
                frames += 1
                if frames > limits.max_frames:
                    raise _too_many_frames(limits.max_frames)
        return _StreamHeader(
            frames=frames,
            height=int(context.height),
            width=int(context.width),
            fps=fps,
            codec=context.name,
            bytes_per_pixel=max(bits / 8, 1.0),
        )


def estimate(header: _StreamHeader, plan: FramePlan, size: int) -> MemoryEstimate:
    """Decoded bytes a video decode holds for ``plan``: the builder's frames, the decoder's
    reference frames, one gray conversion, and per decoder thread the frames in flight."""
    pixels = plan.height * plan.width
    surface = int(pixels * header.bytes_per_pixel * SURFACE_SLACK)
    references = REFERENCE_FRAMES.get(header.codec, 4)
    fixed = plan.held_bytes(size) + references * surface + pixels
    return MemoryEstimate(fixed=fixed, per_thread=2 * surface)


def _container_clips(data: bytes, request: ClipRequest) -> SampledVideo:
    spec, limits = request.spec, request.limits
    gif = read_gif_header(data)
    if gif is not None:  # the canvas every frame becomes, before FFmpeg allocates one
        limits.check_geometry(
            gif.frames, gif.height, gif.width, what=f"the GIF ({gif.width}x{gif.height} screen)"
        )
    try:
        header = _read_header(data, limits)
        if header.frames == 0:
            raise InvalidInput("the video stream holds no decodable frames")
        limits.check_geometry(header.frames, header.height, header.width, what="the video")
        plan = request.plan(header.frames, header.height, header.width)
        what = f"the video ({header.frames} frames of {header.width}x{header.height})"
        estimated = estimate(header, plan, spec.size)
        reservation, threads = reserve(estimated, limits, request.budget, what=what)
        with reservation:
            passes = 1
            run = _Pass(data, header, request, reservation, threads)
            builder, found = run.decode(plan)
            if found != plan.num_frames:  # the packets did not give one frame each: sample anew
                if builder is None or found == 0:
                    raise InvalidInput("the video stream holds no decodable frames")
                height, width = builder.plan.height, builder.plan.width
                builder = None  # let the first pass's frames go before the second decodes
                limits.check_geometry(found, height, width, what="the video")
                plan = request.plan(found, height, width)
                reservation.grow_to(estimate(header, plan, spec.size).total(threads))
                passes = 2
                builder, found = run.decode(plan)
                if found != plan.num_frames:
                    raise InvalidInput(
                        f"the video gave {plan.num_frames} and then {found} frames when decoded "
                        "twice; send a file that decodes the same each time"
                    )
            assert builder is not None
            built = builder.finish(keep_analysis=request.keep_analysis)
    except InvalidInput:
        raise
    except _DECODE_ERRORS as err:
        raise _undecodable(err) from err
    return SampledVideo(
        clips=built.clips,
        num_frames=plan.num_frames,
        height=builder.plan.height,
        width=builder.plan.width,
        fps=header.fps,
        pixel_hash=built.digest,
        hash_mode=request.hash_mode,
        indices=builder.plan.indices,
        crop=built.box,
        decoded_frames=builder.seen,
        passes=passes,
        reserved_bytes=reservation.nbytes,
        threads=threads,
        analysis_frames=built.analysis,
    )


@dataclass(frozen=True)
class _Pass:
    """One decode of the whole video; the same settings serve both passes."""

    data: bytes
    header: _StreamHeader
    request: ClipRequest
    reservation: Reservation
    threads: int

    def decode(self, plan: FramePlan) -> tuple[ClipBuilder | None, int]:
        """Decode every frame in order, converting only those ``plan`` wants.

        Returns the builder (``None`` when no frame decoded) and the frames decoded; the
        builder is complete only when that count equals ``plan.num_frames``.
        """
        limits = self.request.limits
        builder: ClipBuilder | None = None
        decoded = 0
        with av.open(io.BytesIO(self.data), mode="r") as container:
            stream = _video_stream(container)
            stream.thread_type = "AUTO"
            stream.codec_context.thread_count = self.threads
            for frame in container.decode(stream):
                size = (frame.height, frame.width)
                if builder is None:
                    builder = self._first_frame(plan, size)
                elif size != (builder.plan.height, builder.plan.width):
                    raise InvalidInput(
                        "frame size changes inside the video; send a clip of constant size"
                    )
                if decoded >= limits.max_frames:
                    raise _too_many_frames(limits.max_frames)
                if (decoded + 1) * frame.width * frame.height > limits.max_video_pixels:
                    limits.check_geometry(decoded + 1, *size, what="the video")
                # A frame beyond the planned count is only counted: the second pass samples
                # anew. One not wanted is dropped as it is: no conversion, no copy.
                if decoded < plan.num_frames and builder.wants(decoded):
                    builder.add(decoded, frame.to_ndarray(format="gray"))
                decoded += 1
        return builder, decoded

    def _first_frame(self, plan: FramePlan, size: tuple[int, int]) -> ClipBuilder:
        """The builder, once the first frame shows the real size (headers can lie about it)."""
        height, width = size
        request = self.request
        if width * height > request.limits.max_frame_pixels:
            raise InvalidInput(
                f"frames of {width}x{height} exceed the limit of "
                f"{request.limits.max_frame_pixels} pixels"
            )
        if size != (plan.height, plan.width):
            request.limits.check_geometry(plan.num_frames, height, width, what="the video")
            plan = request.plan(plan.num_frames, height, width)
            needed = estimate(self.header, plan, request.spec.size).total(self.threads)
            self.reservation.grow_to(needed)
        return ClipBuilder(
            plan, request.spec.size, request.hash_mode, max_bytes=self.reservation.nbytes
        )


__all__ = ["decode_clips", "estimate"]
