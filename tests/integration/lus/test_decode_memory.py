"""decode_clips in bounded memory: the files that exhausted the server, decoded in a child process.

Each case runs in a fresh interpreter that reads the file, resets its peak RSS (Linux
``/proc/self/clear_refs``; elsewhere the peak so far is the baseline), decodes, and reports how
far the peak rose. The bounds are generous (allocator and codec overhead vary); the old path
would need gigabytes for the same files, so a regression shows by orders of magnitude.
"""

from __future__ import annotations

import json
import struct
import subprocess
import sys
import textwrap
from fractions import Fraction
from pathlib import Path

import av
import numpy as np
import pytest

import tests.unit.lus.test_dicom as dicom_cases

MiB = 1024 * 1024

CHILD = textwrap.dedent(
    """
    import json, resource, sys
    from pathlib import Path

    def status_kb(field):
        try:
            for line in Path("/proc/self/status").read_text().splitlines():
                if line.startswith(field + ":"):
                    return int(line.split()[1])
        except OSError:
            pass
        return None

    def reset_peak_kb():
        try:
            Path("/proc/self/clear_refs").write_text("5")
            current = status_kb("VmRSS")
            if current is not None:
                return current
        except OSError:
            pass
        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss

    def peak_kb():
        peak = status_kb("VmHWM")
        return peak if peak is not None else resource.getrusage(resource.RUSAGE_SELF).ru_maxrss

    from lus.errors import LusError
    from lus.video import InputSpec, decode_clips

    data = Path(sys.argv[1]).read_bytes()
    spec = InputSpec(**json.loads(sys.argv[2]))
    before = reset_peak_kb()
    report = {}
    try:
        result = decode_clips(data, spec, hash_mode=sys.argv[3])
        report.update(
            outcome="ok",
            frames=result.num_frames,
            size=[result.height, result.width],
            clips=list(result.clips.shape),
            converted=result.decoded_frames,
            passes=result.passes,
            reserved=result.reserved_bytes,
        )
    except LusError as err:
        report.update(outcome=type(err).__name__, message=str(err))
    report["growth"] = (peak_kb() - before) * 1024
    print(json.dumps(report))
    """
)


def decode_in_child(
    path: Path, spec: dict[str, object] | None = None, hash_mode: str = "sampled"
) -> dict[str, object]:
    done = subprocess.run(
        [sys.executable, "-c", CHILD, str(path), json.dumps(spec or {}), hash_mode],
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
        cwd=Path(__file__).resolve().parents[3],
    )
    assert done.returncode == 0, done.stderr[-2000:]
    report: dict[str, object] = json.loads(done.stdout.strip().splitlines()[-1])
    return report


def growth(report: dict[str, object]) -> int:
    value = report["growth"]
    assert isinstance(value, int)
    return value


@pytest.fixture(scope="module")
def black_1080p_mp4(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """3,000 black 1920x1080 frames (H.264 when the build has libx264): about 166 KB."""
    path = tmp_path_factory.mktemp("decode-memory") / "black-3000.mp4"
    codec = "libx264" if "libx264" in av.codecs_available else "mpeg4"
    with av.open(str(path), mode="w", format="mp4") as out:
        stream = out.add_stream(codec, rate=30)
        assert isinstance(stream, av.video.stream.VideoStream)
        stream.width, stream.height, stream.pix_fmt = 1920, 1080, "yuv420p"
        if codec == "libx264":
            stream.options = {"preset": "ultrafast"}
        black = np.zeros((1080, 1920, 3), dtype=np.uint8)
        frame = av.VideoFrame.from_ndarray(black, format="rgb24").reformat(format="yuv420p")
        for index in range(3000):
            frame.pts = index
            frame.time_base = Fraction(1, 30)
            out.mux(stream.encode(frame))
        out.mux(stream.encode())
    return path


def test_3000_frame_1080p_video_decodes_in_bounded_memory(black_1080p_mp4: Path) -> None:
    """Reported: 2.9 -> 15.8 GB RSS until killed. All 3,000 frames are decoded (the video is
    inter-coded), but only the 60 sampled ones are converted and kept, resized."""
    assert black_1080p_mp4.stat().st_size < 2 * MiB
    report = decode_in_child(black_1080p_mp4)
    assert report["outcome"] == "ok", report
    assert report["frames"] == 3000 and report["size"] == [1080, 1920]
    assert report["clips"] == [4, 15, 224, 224]
    assert report["converted"] == 60 and report["passes"] == 1
    # Holding the frames would take 3000 * 1920 * 1080 = 6.2 GB (gray).
    assert growth(report) < 400 * MiB, report
    reserved = report["reserved"]
    assert isinstance(reserved, int)
    assert growth(report) < reserved + 64 * MiB, "the estimate should bound what is held"


def test_all_frames_hash_streams_without_holding_frames(black_1080p_mp4: Path) -> None:
    """Today's pixel hash over every frame, computed in a stream: converted, hashed, dropped."""
    report = decode_in_child(black_1080p_mp4, hash_mode="all")
    assert report["outcome"] == "ok" and report["converted"] == 3000
    assert growth(report) < 400 * MiB, report


def gif_bytes(width: int, height: int, frames: int) -> bytes:
    """A GIF89a by hand: a large logical screen and ``frames`` one-pixel frames."""
    out = bytearray(b"GIF89a")
    out += struct.pack("<HHBBB", width, height, 0x80, 0, 0)
    out += bytes([0, 0, 0, 255, 255, 255])
    for i in range(frames):
        out += b"\x21\xf9\x04\x00\x02\x00\x00\x00"
        out += b"\x2c" + struct.pack("<HHHHB", i % width, 0, 1, 1, 0)
        out += b"\x02\x02\x44\x01\x00"
    out += b"\x3b"
    return bytes(out)


def test_gif_canvas_bomb_is_refused_from_its_header(tmp_path: Path) -> None:
    """Reported: a 115 KB GIF, 4096x4096 screen, 5,000 one-pixel frames: 0.94 -> 6.03 GB."""
    path = tmp_path / "bomb.gif"
    path.write_bytes(gif_bytes(4096, 4096, 5000))
    report = decode_in_child(path)
    assert report["outcome"] == "InvalidInput"
    assert "5000 frames of 4096x4096 = 83886080000 pixels" in str(report["message"])
    assert growth(report) < 32 * MiB, report


def test_large_gif_canvas_within_the_limits_is_decoded_in_bounded_memory(tmp_path: Path) -> None:
    """300 frames on a 2048x2048 canvas: 1.2 GB as gray frames, a few canvases here."""
    path = tmp_path / "canvas.gif"
    path.write_bytes(gif_bytes(2048, 2048, 300))
    report = decode_in_child(path)
    assert report["outcome"] == "ok" and report["frames"] == 300, report
    assert growth(report) < 300 * MiB, report


def test_dicom_header_of_5000_frames_of_4096_square_is_refused_before_allocating(
    tmp_path: Path,
) -> None:
    ds = dicom_cases.us_dataset(dicom_cases.moving_frames(1, 8, 8))
    ds.compress("1.2.840.10008.1.2.5")  # RLE: one tiny frame
    ds.NumberOfFrames, ds.Rows, ds.Columns = 5000, 4096, 4096
    path = tmp_path / "bomb.dcm"
    path.write_bytes(dicom_cases.to_bytes(ds))
    report = decode_in_child(path)
    assert report["outcome"] == "InvalidInput"
    assert "5000 frames of 4096x4096" in str(report["message"])
    assert growth(report) < 32 * MiB, report


def rgb_cine(count: int = 120, side: int = 640) -> np.ndarray:
    rng = np.random.default_rng(0)
    base = rng.integers(0, 255, size=(side, side, 3), dtype=np.uint8)
    return np.stack([np.roll(base, 3 * i, axis=1) for i in range(count)])


@pytest.mark.parametrize("syntax", [None, "1.2.840.10008.1.2.5"], ids=["uncompressed", "rle"])
def test_rgb_cine_is_read_a_frame_at_a_time_in_place(tmp_path: Path, syntax: str | None) -> None:
    """120 frames of 640x640 RGB (147 MB of pixels): the old path holds them all decoded, and
    pydicom a copy of the file's pixel data; here only the sampled frames, one per thread."""
    ds = dicom_cases.us_dataset(rgb_cine(), photometric="RGB")
    if syntax:
        ds.compress(syntax)
    path = tmp_path / "rgb.dcm"
    path.write_bytes(dicom_cases.to_bytes(ds))
    del ds
    report = decode_in_child(path)
    assert report["outcome"] == "ok" and report["frames"] == 120, report
    assert report["converted"] == 60
    assert growth(report) < 100 * MiB, report
    reserved = report["reserved"]
    assert isinstance(reserved, int)
    assert growth(report) < reserved + 32 * MiB, "the estimate should bound what is held"
