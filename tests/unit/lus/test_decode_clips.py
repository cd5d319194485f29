"""decode_clips on videos: the same clips as decoding everything, only the sampled frames kept.

The old path (``make_clips(decode_video(data), spec)`` and ``pixel_hash`` of every frame) is the
reference: the new path must give the same clips (exactly: same frames, same crop, same resize
call), the same summary, and with ``hash_mode="all"`` the same pixel hash.
"""

from __future__ import annotations

import io
import struct
import threading
from dataclasses import replace

import av
import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import lus.video.pipeline as pipeline
import tests.unit.lus.test_video_decode as video_cases
from lus.errors import InvalidInput, Overloaded
from lus.feature_store import pixel_hash
from lus.video import (
    DecodeBudget,
    DecodedVideo,
    DecodeLimits,
    InputSpec,
    decode_clips,
    decode_video,
    make_clips,
    sample_decoded,
    sampled_pixel_hash,
)
from lus.video.gif import read_gif_header
from lus.video.limits import MemoryEstimate, reserve
from lus.video.region_heuristic import find_imaging_box
from lus.video.sampled import FramePlan, analysis_indices

SMALL = InputSpec(frames_per_clip=5, size=24, clips=3)


def sector_frames(count: int, height: int = 96, width: int = 128, seed: int = 0) -> np.ndarray:
    """Moving speckle in a box, black margins and a static label: the crop heuristic's case."""
    rng = np.random.default_rng(seed)
    frames = np.zeros((count, height, width), dtype=np.uint8)
    y0, y1, x0, x1 = height // 8, height * 7 // 8, width * 3 // 16, width * 7 // 8
    frames[:, y0:y1, x0:x1] = rng.integers(40, 220, size=(count, y1 - y0, x1 - x0), dtype=np.uint8)
    frames[:, 2:6, 2 : width // 4] = 250  # burned-in text
    return frames


def encode(frames: np.ndarray, container: str = "mp4", codec: str = "mpeg4") -> bytes:
    pix_fmt = {"gif": "rgb8", "mjpeg": "yuvj420p"}.get(codec, "yuv420p")
    return video_cases.encode(frames, container, codec, pix_fmt)


def assert_same_as_old(data: bytes, spec: InputSpec, **kwargs: object) -> None:
    old = decode_video(data)
    new = decode_clips(data, spec, hash_mode="all", **kwargs)
    np.testing.assert_array_equal(new.clips, make_clips(old, spec))
    assert new.pixel_hash == pixel_hash(old.frames)
    assert (new.num_frames, new.height, new.width) == old.frames.shape
    assert new.fps == old.fps


# --- the same results as decoding every frame ------------------------------------------------


@pytest.mark.parametrize(
    ("container", "codec"),
    [("mp4", "mpeg4"), ("avi", "mjpeg"), ("gif", "gif"), ("mov", "mpeg4"), ("mpeg", "mpeg1video")]
    + ([("mp4", "libx264")] if "libx264" in av.codecs_available else []),
)
@pytest.mark.parametrize("crop", ["none", "auto"])
def test_each_container_gives_the_old_clips_and_hash(container: str, codec: str, crop: str) -> None:
    data = encode(sector_frames(37), container, codec)
    assert_same_as_old(data, replace(SMALL, crop=crop))


@pytest.mark.parametrize("count", [1, 2, 4, 15, 16, 61])
def test_short_and_odd_lengths(count: int) -> None:
    """Fewer frames than a clip needs repeat frames, as clip_indices does."""
    data = encode(sector_frames(count))
    assert_same_as_old(data, InputSpec(frames_per_clip=15, size=32, clips=4))


def test_paper_spec_and_size_equal_to_frame() -> None:
    """A frame already at the model's size is not resized, as resize_frame does."""
    frames = sector_frames(20, 64, 64)
    assert_same_as_old(encode(frames), InputSpec(frames_per_clip=15, size=64, clips=4))


def test_only_the_sampled_frames_are_converted() -> None:
    data = encode(sector_frames(300, 48, 64))
    spec = InputSpec(frames_per_clip=15, size=16, clips=4)
    result = decode_clips(data, spec)
    assert result.num_frames == 300
    assert result.decoded_frames == len(np.unique(result.indices)) == 60
    cropped = decode_clips(data, replace(spec, crop="auto"))  # plus the heuristic's frames
    assert cropped.decoded_frames == len(
        set(np.unique(cropped.indices)) | set(analysis_indices(300))
    )
    assert decode_clips(data, spec, hash_mode="all").decoded_frames == 300


def test_header_under_declaring_frames_is_not_trusted() -> None:
    """An AVI whose headers say 3 frames: the packets are counted instead, in one pass."""
    data = bytearray(encode(sector_frames(40), "avi", "mpeg4"))
    struct.pack_into("<I", data, data.index(b"avih") + 8 + 16, 3)  # dwTotalFrames
    struct.pack_into("<I", data, data.index(b"strh") + 8 + 32, 3)  # dwLength
    with av.open(io.BytesIO(bytes(data))) as container:
        assert container.streams.video[0].frames == 3  # the lie is what FFmpeg reports
    assert_same_as_old(bytes(data), SMALL)
    assert decode_clips(bytes(data), SMALL).passes == 1


@pytest.mark.parametrize("error", [-7, +5])
def test_a_wrong_frame_count_is_corrected_by_a_second_pass(
    monkeypatch: pytest.MonkeyPatch, error: int
) -> None:
    """When the decoder gives another count than the packets promised, the video is sampled
    again with the real count: the clips still equal the old path's."""
    data = encode(sector_frames(30))
    read = pipeline._read_header

    def lying(data: bytes, limits: DecodeLimits) -> pipeline._StreamHeader:
        return replace(read(data, limits), frames=30 + error)

    monkeypatch.setattr(pipeline, "_read_header", lying)
    for crop in ("none", "auto"):
        assert_same_as_old(data, replace(SMALL, crop=crop))
    assert decode_clips(data, SMALL).passes == 2


def test_a_header_lying_about_the_size_grows_the_reservation(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    data = encode(sector_frames(12))
    read = pipeline._read_header
    monkeypatch.setattr(
        pipeline, "_read_header", lambda d, lim: replace(read(d, lim), height=8, width=8)
    )
    budget = DecodeBudget(1 << 30)
    assert_same_as_old(data, SMALL, budget=budget)
    assert budget.in_use_bytes == 0
    with pytest.raises(InvalidInput, match=r"frames of 128x96 exceed the limit of 100 pixels"):
        decode_clips(data, SMALL, DecodeLimits(max_frame_pixels=100))


def test_truncated_video_is_refused_or_equals_the_old_prefix() -> None:
    data = encode(sector_frames(24))
    for cut in (16, len(data) // 3, len(data) // 2, len(data) - 50):
        try:
            old = decode_video(data[:cut])
        except InvalidInput:
            with pytest.raises(InvalidInput):
                decode_clips(data[:cut], SMALL)
            continue
        new = decode_clips(data[:cut], SMALL)
        np.testing.assert_array_equal(new.clips, make_clips(old, SMALL))


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (b"", "empty"),
        (b"definitely not a video" * 50, "could not decode"),
        (b"\x00" * 10, "could not decode"),
    ],
)
def test_bad_bytes_are_refused_as_before(data: bytes, message: str) -> None:
    with pytest.raises(InvalidInput, match=message):
        decode_clips(data, SMALL)


def test_frame_limit_is_checked_before_decoding(monkeypatch: pytest.MonkeyPatch) -> None:
    data = encode(sector_frames(12))

    def no_decoding(*args: object) -> None:
        raise AssertionError("decoding started")

    monkeypatch.setattr(pipeline._Pass, "decode", no_decoding)
    with pytest.raises(InvalidInput, match="more than 5 frames"):
        decode_clips(data, SMALL, DecodeLimits(max_frames=5))
    with pytest.raises(InvalidInput, match=r"12 frames of 128x96 = 147456 pixels.*limit of 1000"):
        decode_clips(data, SMALL, DecodeLimits(max_video_pixels=1000))


def test_sampled_frames_of_a_path_equal_those_of_bytes(tmp_path: object) -> None:
    from pathlib import Path

    assert isinstance(tmp_path, Path)
    data = encode(sector_frames(20))
    (tmp_path / "clip.avi").write_bytes(data)  # a misleading name: the content is probed
    a = decode_clips(tmp_path / "clip.avi", SMALL)
    b = decode_clips(data, SMALL)
    np.testing.assert_array_equal(a.clips, b.clips)
    assert a.pixel_hash == b.pixel_hash


# --- the sampled hash -------------------------------------------------------------------------


def test_hash_modes() -> None:
    data = encode(sector_frames(40))
    old = decode_video(data)
    assert decode_clips(data, SMALL, hash_mode="none").pixel_hash == ""
    assert decode_clips(data, SMALL, hash_mode="all").pixel_hash == pixel_hash(old.frames)
    sampled = decode_clips(data, SMALL)
    assert sampled.hash_mode == "sampled" and len(sampled.pixel_hash) == 64
    assert sampled.pixel_hash == sampled_pixel_hash(old, SMALL)  # frames in memory: same hash
    assert sampled.pixel_hash != pixel_hash(old.frames)
    with pytest.raises(ValueError, match="hash mode"):
        decode_clips(data, SMALL, hash_mode="most")


def test_sampled_hash_covers_exactly_what_the_model_sees() -> None:
    frames = sector_frames(40)
    video = DecodedVideo(frames=frames, fps=25.0)
    base = sample_decoded(video, SMALL)
    sampled = set(np.unique(base.indices).tolist())
    unsampled = next(i for i in range(40) if i not in sampled)
    changed = frames.copy()
    changed[unsampled] ^= 1
    assert sample_decoded(replace(video, frames=changed), SMALL).pixel_hash == base.pixel_hash
    changed = frames.copy()
    changed[min(sampled), 50, 50] ^= 1
    assert sample_decoded(replace(video, frames=changed), SMALL).pixel_hash != base.pixel_hash
    # Another sampling (another spec), the crop, or another length give another hash.
    assert sample_decoded(video, replace(SMALL, clips=2)).pixel_hash != base.pixel_hash
    assert sample_decoded(video, replace(SMALL, crop="auto")).pixel_hash != base.pixel_hash
    shorter = sample_decoded(replace(video, frames=frames[:39]), SMALL)
    assert shorter.pixel_hash != base.pixel_hash
    # The resize is not covered: the model version (which fixes the size) is part of every key.
    assert sample_decoded(video, replace(SMALL, size=32)).pixel_hash == base.pixel_hash


def test_sample_decoded_equals_make_clips_also_for_cropped_videos() -> None:
    from lus.video import crop_frames

    video = DecodedVideo(frames=sector_frames(33), fps=10.0)
    for spec in (SMALL, replace(SMALL, crop="auto")):
        np.testing.assert_array_equal(sample_decoded(video, spec).clips, make_clips(video, spec))
    cropped = crop_frames(video, "auto")
    result = sample_decoded(cropped, replace(SMALL, crop="auto"))
    np.testing.assert_array_equal(result.clips, make_clips(cropped, replace(SMALL, crop="auto")))
    assert result.crop == cropped.crop


# --- the crop heuristic from its own frames only ----------------------------------------------


@pytest.mark.parametrize("count", [1, 2, 3, 5, 31, 32, 33, 64, 100, 257])
def test_the_heuristic_reads_only_its_analysis_frames(count: int) -> None:
    """find_imaging_box on just the analysis frames equals it on the whole video: the new path
    keeps only those. This fails if region_heuristic changes which frames it reads."""
    frames = sector_frames(count, 60, 80, seed=count)
    stack = frames[list(analysis_indices(count))]
    assert find_imaging_box(stack) == find_imaging_box(frames)
    moved = frames.copy()  # frames outside the analysis set must not matter
    others = [i for i in range(count) if i not in set(analysis_indices(count))]
    moved[others] = 0
    assert find_imaging_box(moved) == find_imaging_box(frames)


def test_plan_holds_full_frames_only_while_the_crop_is_unknown() -> None:
    plain = FramePlan.make(600, 1080, 1080, InputSpec())
    assert plain.analysis == () and len(plain.sampled) == 60
    assert plain.held_bytes(224) == (60 + 4 * 15) * 224 * 224  # resized frames, then the clips
    auto = FramePlan.make(600, 1080, 1080, InputSpec(crop="auto"))
    assert len(auto.analysis) == 32
    assert auto.held_bytes(224) >= len(auto.needed) * 1080 * 1080


# --- GIF canvas --------------------------------------------------------------------------------


def gif_bytes(width: int, height: int, frames: int) -> bytes:
    """A GIF89a by hand: a ``width x height`` logical screen and ``frames`` one-pixel frames.

    Each frame: a graphic control extension, an image descriptor for 1x1 at a moving x, and the
    LZW data for one pixel (clear code 4, index 0, end code 5 at 3 bits: bytes 0x44 0x01).
    """
    out = bytearray(b"GIF89a")
    out += struct.pack("<HHBBB", width, height, 0x80, 0, 0)  # global colour table, 2 entries
    out += bytes([0, 0, 0, 255, 255, 255])
    for i in range(frames):
        out += b"\x21\xf9\x04\x00\x02\x00\x00\x00"
        out += b"\x2c" + struct.pack("<HHHHB", i % width, 0, 1, 1, 0)
        out += b"\x02\x02\x44\x01\x00"
    out += b"\x3b"
    return bytes(out)


def test_gif_header_is_read_without_decoding() -> None:
    data = gif_bytes(4096, 4096, 5000)
    assert 110_000 < len(data) < 120_000  # the size of the reported file
    header = read_gif_header(data)
    assert header is not None
    assert (header.width, header.height, header.frames, header.complete) == (4096, 4096, 5000, True)
    assert read_gif_header(b"\x00" * 20) is None
    cut = read_gif_header(data[:5000])
    assert cut is not None and not cut.complete and 0 < cut.frames < 5000
    encoded = encode(sector_frames(9), "gif", "gif")
    parsed = read_gif_header(encoded)
    assert parsed is not None and parsed.frames == decode_video(encoded).num_frames == 9


def test_small_handmade_gif_decodes_like_the_old_path() -> None:
    data = gif_bytes(40, 30, 25)
    assert_same_as_old(data, SMALL)


def test_gif_canvas_bomb_is_refused_before_ffmpeg_opens_it(monkeypatch: pytest.MonkeyPatch) -> None:
    def no_ffmpeg(*args: object, **kwargs: object) -> None:
        raise AssertionError("FFmpeg was asked to open the file")

    monkeypatch.setattr(pipeline.av, "open", no_ffmpeg)
    with pytest.raises(InvalidInput, match=r"5000 frames of 4096x4096 = 83886080000 pixels"):
        decode_clips(gif_bytes(4096, 4096, 5000), InputSpec())
    with pytest.raises(InvalidInput, match=r"8192x8192 \(67108864 pixels\)"):
        decode_clips(gif_bytes(8192, 8192, 1), InputSpec())


# --- limits and the server-wide budget --------------------------------------------------------


def test_limits_validate_and_name_the_numbers() -> None:
    with pytest.raises(ValueError, match="max_frames"):
        DecodeLimits(max_frames=0)
    with pytest.raises(ValueError, match="threads"):
        DecodeLimits(threads=0)
    limits = DecodeLimits()
    limits.check_geometry(3000, 1080, 1920, what="the video")  # the reported MP4 is allowed
    with pytest.raises(InvalidInput, match=r"5001 frames, more than the limit of 5000"):
        limits.check_geometry(5001, 10, 10, what="x")


def test_estimate_picks_the_threads_that_fit() -> None:
    estimate = MemoryEstimate(fixed=100, per_thread=50)
    assert estimate.total(3) == 250
    assert estimate.threads_within(260, 8) == 3
    assert estimate.threads_within(120, 8) == 0
    limits = DecodeLimits(max_request_bytes=220, threads=4)
    reservation, threads = reserve(estimate, limits, None, what="it")
    assert (threads, reservation.nbytes) == (2, 200)
    with pytest.raises(InvalidInput, match=r"would hold 150 bytes at once, more than the limit"):
        reserve(estimate, DecodeLimits(max_request_bytes=149), None, what="it")
    budget = DecodeBudget(180)  # room for one thread only: fewer threads, not a refusal
    reservation, threads = reserve(estimate, limits, budget, what="it")
    assert (threads, reservation.nbytes, budget.in_use_bytes) == (1, 180, 180)
    reservation.release()
    reservation.release()  # twice is harmless
    assert budget.in_use_bytes == 0


def test_budget_refuses_with_the_numbers_and_releases() -> None:
    budget = DecodeBudget(1000)
    with budget.reserve(600) as first:
        assert first.nbytes == 600 and budget.in_use_bytes == 600
        with pytest.raises(Overloaded, match=r"needs 500 bytes; 600 of the server's 1000"):
            budget.reserve(500)
        partial = budget.reserve(900, at_least=300)  # what is free, when enough
        assert partial.nbytes == 400
        with pytest.raises(Overloaded):
            first.grow_to(700)  # the rest is held by the other reservation
        partial.release()
        first.grow_to(900)
        assert budget.in_use_bytes == 900
    assert budget.in_use_bytes == 0
    with pytest.raises(InvalidInput, match="more than this server's whole decode budget of 1000"):
        budget.reserve(1001)


def test_budget_is_thread_safe() -> None:
    budget = DecodeBudget(10_000)
    peak = [0]
    errors: list[BaseException] = []

    def worker() -> None:
        for _ in range(300):
            try:
                with budget.reserve(700):
                    peak[0] = max(peak[0], budget.in_use_bytes)
            except Overloaded:
                pass
            except BaseException as err:  # pragma: no cover - reported below
                errors.append(err)

    threads = [threading.Thread(target=worker) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert not errors
    assert peak[0] <= 10_000 and budget.in_use_bytes == 0


def test_decode_with_a_budget_reserves_and_gives_back() -> None:
    data = encode(sector_frames(30))
    budget = DecodeBudget(1 << 30)
    result = decode_clips(data, SMALL, budget=budget)
    assert result.reserved_bytes > 0 and budget.in_use_bytes == 0
    with pytest.raises(InvalidInput):
        decode_clips(data[: len(data) // 2] + b"\x00" * 5000, SMALL, budget=budget)
    assert budget.in_use_bytes == 0
    small = DecodeBudget(result.reserved_bytes // 4)
    with pytest.raises(InvalidInput, match="whole decode budget"):
        decode_clips(data, SMALL, budget=small)
    busy = DecodeBudget(result.reserved_bytes * 3 // 2)
    with busy.reserve(result.reserved_bytes), pytest.raises(Overloaded, match="retry shortly"):
        decode_clips(data, SMALL, budget=busy)
    assert busy.in_use_bytes == 0


# --- the input check's frames -------------------------------------------------------------------


@pytest.mark.parametrize("count", [1, 3, 20, 32, 45, 200])
def test_analysis_frames_give_the_input_checks_measures(count: int) -> None:
    """lus.video.adequacy reads the same evenly spread frames as the crop heuristic: measured on
    the analysis frames alone, a clip gets the measures of the whole video. (Its frame-count
    check needs ``num_frames``: the analysis holds at most 32 frames.)"""
    from lus.video.adequacy import assess

    frames = sector_frames(count, 48, 64, seed=count)
    frames[count // 2 :, 10:20, 10:30] = 0  # something changes half way
    data = encode(frames)
    old = decode_video(data)
    result = decode_clips(data, SMALL, keep_analysis=True)
    assert result.analysis_frames is not None
    np.testing.assert_array_equal(result.analysis_frames, old.frames[list(analysis_indices(count))])
    whole, part = assess(old.frames, min_frames=4), assess(result.analysis_frames, min_frames=4)
    assert (part.textured_share, part.moving_share) == (whole.textured_share, whole.moving_share)
    assert part.shortfalls == whole.shortfalls
    assert decode_clips(data, SMALL).analysis_frames is None
    from_memory = sample_decoded(old, SMALL, keep_analysis=True).analysis_frames
    assert from_memory is not None
    np.testing.assert_array_equal(from_memory, result.analysis_frames)


FUZZ_SEEDS = {
    "mp4": encode(sector_frames(12, 32, 32)),
    "gif": gif_bytes(24, 16, 6),
    "avi": encode(sector_frames(8, 32, 32), "avi", "mjpeg"),
}


@settings(max_examples=120, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.data())
def test_mutated_videos_never_raise_anything_but_invalid_input(data: st.DataObject) -> None:
    original = bytearray(FUZZ_SEEDS[data.draw(st.sampled_from(sorted(FUZZ_SEEDS)))])
    for _ in range(data.draw(st.integers(1, 8))):
        position = data.draw(st.integers(0, len(original) - 1))
        original[position] = data.draw(st.integers(0, 255))
    cut = data.draw(st.integers(1, len(original)))
    crop = data.draw(st.sampled_from(["none", "auto"]))
    spec = InputSpec(frames_per_clip=3, size=8, clips=2, crop=crop)
    budget = DecodeBudget(1 << 30)
    try:
        result = decode_clips(
            bytes(original[:cut]), spec, DecodeLimits(max_frames=50), budget=budget
        )
    except InvalidInput:
        assert budget.in_use_bytes == 0
        return
    assert result.clips.shape == (2, 3, 8, 8) and result.clips.dtype == np.uint8
    assert budget.in_use_bytes == 0
