"""Write cine loops as real video files with PyAV, choosing the codec by file extension.

=========  =========  ==================================  =========================
Extension  Container  Codec / pixel format                Notice in metadata
=========  =========  ==================================  =========================
.mp4       MP4        libx264 (else mpeg4), yuv420p       title + comment
.mov       QuickTime  libx264 (else mpeg4), yuv420p       title + comment
.avi       AVI        mpeg4 (else mjpeg), yuv420p         title + comment (INFO)
.mpeg/.mpg MPEG-PS    mpeg2video, yuv420p                 none (format has no tags)
.gif       GIF        gif, gray                           none (muxer writes no tags)
=========  =========  ==================================  =========================

All encoders run single-threaded, so the same frames give the same bitstream on one machine (and
the same decoded frames with the same FFmpeg build). Every format decodes back to exactly the
number of frames written, no +-1 (checked by the tests; :func:`read_video` is the reader they
use). Caveats:

* yuv420p needs even sides: odd heights or widths are padded by repeating the last row/column,
  so such a video decodes one pixel taller or wider;
* lossy codecs change pixel values slightly (mean absolute error ~2 grey levels at 128 px);
  GIF (grey palette) is lossless;
* GIF stores frame delays in centiseconds, so 15 fps reads back as 16.67 fps (same frames);
* MPEG-2 knows few frame rates natively; others (15 fps) use the ``frame_rate_ext`` field,
  which FFmpeg reads back fine.
"""

from __future__ import annotations

from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path

import av
import numpy as np

from lus.provenance import SYNTHETIC_DATA_NOTICE


@dataclass(frozen=True)
class _Format:
    codecs: tuple[str, ...]  # first available wins
    pix_fmt: str
    tags: bool  # the muxer stores title/comment
    even: bool  # the pixel format subsamples chroma, so sides must be even


FORMATS: dict[str, _Format] = {
    "mp4": _Format(("libx264", "mpeg4"), "yuv420p", tags=True, even=True),
    "mov": _Format(("libx264", "mpeg4"), "yuv420p", tags=True, even=True),
    "avi": _Format(("mpeg4", "mjpeg"), "yuv420p", tags=True, even=True),
    "mpeg": _Format(("mpeg2video", "mpeg1video"), "yuv420p", tags=False, even=True),
    "mpg": _Format(("mpeg2video", "mpeg1video"), "yuv420p", tags=False, even=True),
    "gif": _Format(("gif",), "gray", tags=False, even=False),
}
"""Supported file extensions (without the dot)."""


def _available(name: str) -> bool:
    try:
        av.codec.Codec(name, "w")
    except Exception:  # PyAV raises UnknownCodecError or a FFmpeg error, depending on build
        return False
    return True


def codec_for(extension: str) -> str:
    """The encoder :func:`write_video` uses for a file extension (with or without the dot).

    Raises:
        ValueError: The extension is not supported, or none of its encoders is built in.
    """
    fmt = FORMATS.get(extension.lower().lstrip("."))
    if fmt is None:
        raise ValueError(f"unsupported video extension {extension!r}; use one of {sorted(FORMATS)}")
    for name in fmt.codecs:
        if _available(name):
            return name
    raise ValueError(f"this FFmpeg build has none of the encoders {fmt.codecs} for {extension}")


def _as_frames(frames: np.ndarray, even: bool) -> tuple[np.ndarray, str]:
    """Validate and, for chroma-subsampled formats, pad to even sides; returns (array, format)."""
    array = np.asarray(frames)
    if array.dtype != np.uint8:
        raise ValueError(f"frames must be uint8, not {array.dtype}")
    if array.ndim == 3:
        layout = "gray"
    elif array.ndim == 4 and array.shape[-1] == 3:
        layout = "rgb24"
    else:
        raise ValueError(f"frames must be (T, H, W) or (T, H, W, 3), not {array.shape}")
    if array.shape[0] < 1:
        raise ValueError("a video needs at least one frame")
    if even:
        pad_h, pad_w = array.shape[1] % 2, array.shape[2] % 2
        if pad_h or pad_w:
            widths = [(0, 0), (0, pad_h), (0, pad_w)] + [(0, 0)] * (array.ndim - 3)
            array = np.pad(array, widths, mode="edge")
    return np.ascontiguousarray(array), layout


def _configure(stream: av.VideoStream, codec: str, height: int, width: int, fps: float) -> None:
    """Quality and reproducibility settings per encoder.

    Speckle is high-entropy detail that low default bit rates would smear away, so quality is set
    well above the defaults; one thread keeps the bitstream identical from run to run.
    """
    ctx = stream.codec_context
    ctx.thread_count = 1
    if codec == "libx264":
        stream.options = {"crf": "16", "preset": "veryfast"}
    elif codec in ("mpeg4", "mpeg2video", "mpeg1video"):
        ctx.bit_rate = max(1_000_000, int(height * width * fps * 1.5))
        ctx.max_b_frames = 0
        ctx.gop_size = 12
    elif codec == "mjpeg":
        ctx.qmin, ctx.qmax = 2, 4
    if codec == "mjpeg":
        stream.pix_fmt = "yuvj420p"


def write_video(path: str | Path, frames: np.ndarray, fps: float) -> Path:
    """Encode frames into a video file whose container and codec follow the file extension.

    Args:
        path: Output file; its extension picks the format (see :data:`FORMATS`). Parent
            folders are created.
        frames: ``uint8`` frames, grey ``(T, H, W)`` or RGB ``(T, H, W, 3)``.
        fps: Frame rate.

    Returns:
        The path written.

    Raises:
        ValueError: Unsupported extension or frame array.
    """
    path = Path(path)
    if fps <= 0:
        raise ValueError(f"fps must be positive, not {fps}")
    extension = path.suffix.lower().lstrip(".")
    codec = codec_for(extension)
    fmt = FORMATS[extension]
    array, layout = _as_frames(frames, fmt.even)
    _, height, width = array.shape[:3]
    path.parent.mkdir(parents=True, exist_ok=True)
    rate = Fraction(fps).limit_denominator(1001)
    with av.open(str(path), mode="w") as container:
        if fmt.tags:
            container.metadata["title"] = "Synthetic lung-ultrasound cine loop"
            container.metadata["comment"] = SYNTHETIC_DATA_NOTICE
        stream = container.add_stream(codec, rate=rate)
        if not isinstance(stream, av.VideoStream):  # pragma: no cover - codec_for picks video
            raise TypeError(f"{codec} is not a video encoder")
        stream.width, stream.height = width, height
        stream.pix_fmt = fmt.pix_fmt
        _configure(stream, codec, height, width, fps)
        for image in array:
            frame = av.VideoFrame.from_ndarray(image, format=layout)
            container.mux(stream.encode(frame))
        container.mux(stream.encode(None))
    return path


def read_video(path: str | Path) -> np.ndarray:
    """Decode every frame of a video file to grey ``uint8``, shape ``(T, H, W)``."""
    with av.open(str(path)) as container:
        return np.stack([f.to_ndarray(format="gray") for f in container.decode(video=0)])
