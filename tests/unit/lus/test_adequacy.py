"""The input check: real and synthetic clips pass; stills, blank and frozen clips are refused."""

from __future__ import annotations

import csv
import io
from pathlib import Path

import av
import numpy as np
import pytest

from lus.errors import InvalidInput
from lus.synthetic import generate_dataset, render_frames, sample_case
from lus.video import DecodedVideo, InputSpec, decode_video
from lus.video.adequacy import MIN_FRAMES, MIN_SIDE, assess, check_adequate

PAPER_FRAMES = InputSpec().frames_per_clip
"""Frames per clip of the paper's model (15): what the served model asks of every clip."""


def encode(frames: np.ndarray, codec: str = "libx264", fmt: str = "mp4") -> bytes:
    """Gray frames as a video file, through a lossy codec as a scanner export would be."""
    buffer = io.BytesIO()
    with av.open(buffer, mode="w", format=fmt) as out:
        stream = out.add_stream(codec, rate=15)
        assert isinstance(stream, av.VideoStream)
        stream.height, stream.width = frames.shape[1:]
        stream.pix_fmt = "yuv420p"
        for frame in frames:
            rgb = np.repeat(frame[..., None], 3, axis=2)
            out.mux(stream.encode(av.VideoFrame.from_ndarray(rgb, format="rgb24")))
        out.mux(stream.encode())
    return buffer.getvalue()


def synthetic(frames: int = 24, size: int = 96, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return render_frames(sample_case(rng), rng, frames=frames, height=size, width=size)


def refusal(frames: np.ndarray, min_frames: int = MIN_FRAMES) -> str:
    with pytest.raises(InvalidInput) as caught:
        check_adequate(DecodedVideo(frames=frames, fps=15.0), min_frames=min_frames)
    return str(caught.value)


def test_every_real_pocus_clip_passes(pocus_dir: Path) -> None:
    with (pocus_dir / "manifest.csv").open(newline="") as handle:
        rows = list(csv.DictReader(handle))
    failing = {}
    for row in rows:
        result = assess(decode_video(pocus_dir / row["video"]), min_frames=PAPER_FRAMES)
        if not result.adequate:
            failing[row["video"]] = result
    assert len(rows) == 90
    assert not failing, failing


@pytest.mark.parametrize(("size", "frames"), [(16, 4), (32, 8), (64, 16), (128, 24)])
def test_synthetic_clips_pass_as_rendered(size: int, frames: int) -> None:
    for seed in range(10):
        result = assess(synthetic(frames, size, seed), min_frames=frames)
        assert result.adequate, (seed, result)


def test_synthetic_files_pass_after_encoding(tmp_path: Path) -> None:
    """What ``lus demo`` and the tests serve: every writer format, small frames."""
    manifest = generate_dataset(
        tmp_path, n_videos=8, frames=8, height=48, width=48, formats=("mp4", "avi", "gif", "mov"),
        progress=False,
    )  # fmt: skip
    with manifest.open(newline="") as handle:
        for row in csv.DictReader(handle):
            result = assess(decode_video(tmp_path / row["video"]), min_frames=8)
            assert result.adequate, (row["video"], result)


def test_random_noise_clips_pass() -> None:
    """The tests' stand-in videos: noise is texture and motion, whatever it means clinically."""
    noise = np.random.default_rng(0).integers(0, 255, (6, 32, 32), dtype=np.uint8)
    assert assess(noise, min_frames=4).adequate
    assert assess(decode_video(encode(noise, "mpeg4")), min_frames=4).adequate


def test_a_still_image_is_refused() -> None:
    message = refusal(synthetic(frames=1))
    assert message.startswith("insufficient input: fewer than 4 frames (a still image")
    assert "no motion" not in message  # one frame: the frame count already says it


def test_a_one_frame_flat_grey_mp4_is_refused_for_both_reasons() -> None:
    video = decode_video(encode(np.full((1, 64, 64), 128, np.uint8)))
    with pytest.raises(InvalidInput) as caught:
        check_adequate(video, min_frames=4)
    assert str(caught.value) == (
        "insufficient input: fewer than 4 frames (a still image or a very short clip); "
        "no image content (blank or flat frames: no ultrasound sector); send a B-mode "
        "ultrasound cine loop of at least 4 frames in which the image moves"
    )


@pytest.mark.parametrize("level", [0, 128, 255])
def test_flat_clips_are_refused(level: int) -> None:
    frames = decode_video(encode(np.full((24, 64, 64), level, np.uint8))).frames
    message = refusal(frames)
    assert "no image content" in message and "no motion" in message
    assert "fewer than" not in message


def test_a_blank_screen_with_burned_in_text_is_refused() -> None:
    """Strokes are texture to the content measure (codec ringing widens them); nothing moves."""
    frames = np.zeros((24, 96, 96), np.uint8)
    frames[:, 5:12, 5:60] = 200  # a label
    frames[:, 80:88, 60:90] = 255  # a depth marker
    assert "no motion between frames" in refusal(decode_video(encode(frames)).frames)
    assert "no image content" in refusal(frames[:, :, :40])  # a lone label, uncompressed


@pytest.mark.parametrize("codec", [None, "libx264"])
def test_a_frozen_ultrasound_frame_is_refused(codec: str | None) -> None:
    frames = np.repeat(synthetic(frames=2)[:1], 30, axis=0)
    if codec is not None:
        frames = decode_video(encode(frames, codec)).frames
    message = refusal(frames)
    assert "no motion between frames" in message and "no image content" not in message


def test_tiny_frames_are_refused() -> None:
    noise = np.random.default_rng(1).integers(0, 255, (8, MIN_SIDE - 1, 64), dtype=np.uint8)
    assert f"frames smaller than {MIN_SIDE}x{MIN_SIDE}" in refusal(noise)


def test_the_model_clip_length_sets_the_minimum() -> None:
    clip = synthetic(frames=12)
    assert assess(clip, min_frames=12).adequate
    assert "fewer than 15 frames" in refusal(clip, min_frames=15)
    assert assess(clip, min_frames=1).adequate  # never below MIN_FRAMES, never above asked
    assert "fewer than 4 frames" in refusal(clip[:3], min_frames=1)


def test_the_message_echoes_no_measured_value() -> None:
    frames = np.repeat(synthetic(frames=2, seed=3)[:1], 10, axis=0)
    result = assess(frames)
    message = refusal(frames)
    for value in (result.textured_share, result.moving_share):
        assert f"{value:.2f}" not in message and f"{value:.1%}" not in message
    assert "10" not in message  # the clip's own frame count
