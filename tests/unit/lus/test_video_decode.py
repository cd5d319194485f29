from __future__ import annotations

import csv
import io
from pathlib import Path

import av
import numpy as np
import pytest

from lus.errors import InvalidInput
from lus.video import DecodedVideo, InputSpec, decode_video, frames_from_raw, make_clips


def encode(frames: np.ndarray, container: str, codec: str, pix_fmt: str) -> bytes:
    """Encode gray frames with PyAV directly, independent of the project's own writer."""
    buffer = io.BytesIO()
    with av.open(buffer, mode="w", format=container) as out:
        stream = out.add_stream(codec, rate=25)  # MPEG-1 allows only standard rates
        stream.width, stream.height, stream.pix_fmt = frames.shape[2], frames.shape[1], pix_fmt
        for f in frames:
            rgb = np.repeat(f[..., None], 3, axis=2)
            out.mux(stream.encode(av.VideoFrame.from_ndarray(rgb, format="rgb24")))
        out.mux(stream.encode())
    return buffer.getvalue()


def ramp_frames(n: int = 12, size: int = 64) -> np.ndarray:
    base = np.tile(np.linspace(0, 255, size, dtype=np.uint8), (size, 1))
    return np.stack([np.roll(base, 3 * i, axis=1) for i in range(n)])


@pytest.mark.parametrize(
    ("container", "codec", "pix_fmt"),
    [
        ("mp4", "mpeg4", "yuv420p"),
        ("avi", "mjpeg", "yuvj420p"),
        ("gif", "gif", "rgb8"),
        ("mov", "mpeg4", "yuv420p"),
        ("mpeg", "mpeg1video", "yuv420p"),
    ],
)
def test_each_container_decodes_to_gray_frames(container: str, codec: str, pix_fmt: str) -> None:
    frames = ramp_frames()
    video = decode_video(encode(frames, container, codec, pix_fmt))
    assert video.frames.dtype == np.uint8 and video.frames.shape[1:] == (64, 64)
    assert abs(video.num_frames - 12) <= 1
    assert (
        np.abs(video.frames[0].astype(int) - frames[0]).mean() < 12
    )  # lossy, but the same picture


def test_avi_extension_holding_mp4_is_probed_not_trusted(tmp_path: Path) -> None:
    path = tmp_path / "clip.avi"
    path.write_bytes(encode(ramp_frames(), "mp4", "mpeg4", "yuv420p"))
    assert decode_video(path).num_frames == 12


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (b"", "empty"),
        (b"definitely not a video" * 50, "could not decode"),
        (b"\x00" * 10, "could not decode"),
    ],
)
def test_bad_bytes_raise_invalid_input(data: bytes, message: str) -> None:
    with pytest.raises(InvalidInput, match=message):
        decode_video(data)


def test_truncated_video_is_refused_or_decodes_a_prefix() -> None:
    data = encode(ramp_frames(), "mp4", "mpeg4", "yuv420p")
    for cut in (16, len(data) // 3, len(data) - 50):
        try:
            video = decode_video(data[:cut])
        except InvalidInput:
            continue
        assert 0 < video.num_frames <= 12


def test_frame_limit_is_enforced() -> None:
    with pytest.raises(InvalidInput, match="more than 5 frames"):
        decode_video(encode(ramp_frames(), "mp4", "mpeg4", "yuv420p"), max_frames=5)


def test_raw_frames_gray_and_rgb() -> None:
    gray = ramp_frames(3, 8)
    assert (
        frames_from_raw(gray.tobytes(), count=3, height=8, width=8, channels=1).frames == gray
    ).all()
    rgb = np.repeat(gray[..., None], 3, axis=3)
    assert (
        frames_from_raw(rgb.tobytes(), count=3, height=8, width=8, channels=3).frames == gray
    ).all()
    with pytest.raises(InvalidInput, match="needs 192"):
        frames_from_raw(gray.tobytes()[:-1], count=3, height=8, width=8, channels=1)
    with pytest.raises(InvalidInput, match="channels"):
        frames_from_raw(gray.tobytes(), count=3, height=8, width=8, channels=2)


def test_make_clips_shapes_and_resize() -> None:
    video = DecodedVideo(frames=ramp_frames(40, 96), fps=10.0)
    clips = make_clips(video, InputSpec(frames_per_clip=15, size=32, clips=4))
    assert clips.shape == (4, 15, 32, 32) and clips.dtype == np.uint8
    train = make_clips(video, InputSpec(frames_per_clip=15, size=32), rng=np.random.default_rng(0))
    assert train.shape == (1, 15, 32, 32)


def test_reads_every_real_pocus_video(pocus_dir: Path) -> None:
    with (pocus_dir / "manifest.csv").open() as handle:
        rows = list(csv.DictReader(handle))
    assert len(rows) == 90
    for row in rows:
        video = decode_video(pocus_dir / row["video"])
        assert video.num_frames == int(row["frames"]), row["video"]
        assert video.frames.shape[1:] == (int(row["height"]), int(row["width"])), row["video"]
        assert make_clips(video, InputSpec()).shape == (4, 15, 224, 224)
