"""Decode DICOM or any container FFmpeg knows (MP4, AVI, GIF, MOV, MPEG) into grayscale frames.

The content is probed, not the file name: several real ``.avi`` files hold MP4 streams, and DICOM
files come with any name (or none).
"""

from __future__ import annotations

import io
from pathlib import Path

import av
import numpy as np

from lus.errors import InvalidInput
from lus.video.dicom import decode_dicom, looks_like_dicom
from lus.video.limits import MAX_FRAME_PIXELS, MAX_FRAMES
from lus.video.types import DecodedVideo

MAX_PIXELS_PER_FRAME = MAX_FRAME_PIXELS
"""Pixels of one frame at most (the same limit as ``DecodeLimits.max_frame_pixels``)."""

__all__ = ["MAX_FRAMES", "MAX_PIXELS_PER_FRAME", "DecodedVideo", "decode_video", "frames_from_raw"]


def decode_video(source: bytes | Path, *, max_frames: int = MAX_FRAMES) -> DecodedVideo:
    """Decode every frame of a DICOM file or of the first video stream to 8-bit grayscale.

    Every frame is held in memory; a server should use :func:`lus.video.decode_clips`, which
    keeps only the frames the model needs, within limits and a memory budget.

    Raises:
        InvalidInput: empty input, no video stream or pixel data, undecodable data, or too many
            frames.
    """
    data = source.read_bytes() if isinstance(source, Path) else source
    if not data:
        raise InvalidInput(
            "video is empty (0 bytes); send the bytes of a DICOM or MP4/AVI/GIF/MOV/MPEG file"
        )
    if looks_like_dicom(data):
        return decode_dicom(data, max_frames=max_frames, max_pixels=MAX_PIXELS_PER_FRAME)
    return _decode_container(data, max_frames=max_frames)


def _decode_container(data: bytes, *, max_frames: int) -> DecodedVideo:
    try:
        with av.open(io.BytesIO(data), mode="r") as container:
            if not container.streams.video:
                raise InvalidInput("no video stream found in the uploaded file")
            stream = container.streams.video[0]
            stream.thread_type = "AUTO"
            fps = float(stream.average_rate) if stream.average_rate else 0.0
            frames = []
            for frame in container.decode(stream):
                if frame.width * frame.height > MAX_PIXELS_PER_FRAME:
                    raise InvalidInput(
                        f"frames of {frame.width}x{frame.height} exceed the limit of "
                        f"{MAX_PIXELS_PER_FRAME} pixels"
                    )
                frames.append(frame.to_ndarray(format="gray"))
                if len(frames) > max_frames:
                    raise InvalidInput(
                        f"video has more than {max_frames} frames; send a shorter clip"
                    )
    except InvalidInput:
        raise
    except (av.error.FFmpegError, ValueError, EOFError, MemoryError) as err:
        raise InvalidInput(
            f"could not decode the file as a video ({type(err).__name__}: {err}); "
            "send a DICOM, MP4, AVI, GIF, MOV or MPEG file"
        ) from err
    if not frames:
        raise InvalidInput("the video stream holds no decodable frames")
    if len({f.shape for f in frames}) != 1:
        raise InvalidInput("frame size changes inside the video; send a clip of constant size")
    return DecodedVideo(frames=np.stack(frames), fps=fps)


def frames_from_raw(
    pixels: bytes, *, count: int, height: int, width: int, channels: int, fps: float = 0.0
) -> DecodedVideo:
    """Wrap already decoded 8-bit frames (grayscale or interleaved RGB) as a video."""
    if channels not in (1, 3):
        raise InvalidInput(f"raw frames have {channels} channels; send 1 (gray) or 3 (RGB)")
    if count < 1 or height < 1 or width < 1:
        raise InvalidInput("raw frames need count, height and width of at least 1")
    if count > MAX_FRAMES or height * width > MAX_PIXELS_PER_FRAME:
        raise InvalidInput(
            f"raw frames exceed the limits ({MAX_FRAMES} frames, {MAX_PIXELS_PER_FRAME} pixels)"
        )
    expected = count * height * width * channels
    if len(pixels) != expected:
        raise InvalidInput(
            f"raw frames hold {len(pixels)} bytes; "
            f"{count}x{height}x{width}x{channels} needs {expected}"
        )
    array = np.frombuffer(pixels, dtype=np.uint8).reshape(count, height, width, channels)
    if channels == 3:  # ITU-R BT.601 luma, as FFmpeg's gray conversion
        gray = array @ np.array([0.299, 0.587, 0.114])
        frames = np.clip(np.rint(gray), 0, 255).astype(np.uint8)
    else:
        frames = array[..., 0].copy()
    return DecodedVideo(frames=frames, fps=fps)
