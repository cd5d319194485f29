"""Decode-to-clips time and peak memory: today's path against ``decode_clips``, in one run.

    python benchmarks/decode_throughput.py                       # the full matrix (long)
    python benchmarks/decode_throughput.py --small               # a quick check (~1 min)
    python benchmarks/decode_throughput.py --sizes 1080x1080 --frames 100 --cases dicom-jpegls
    python benchmarks/decode_throughput.py --small --end-to-end  # + one gRPC Extract per case
    python benchmarks/decode_throughput.py --sizes 1080x1080 --frames 600 --cases mp4 --breakdown

The script makes its own ultrasound-like cine loops (a convex sector of moving speckle, a
pleural line, B-lines, burned-in text and, for RGB, a colour bar and a colour-flow box) and
writes them as DICOM (uncompressed, RLE, JPEG-LS, JPEG 2000 lossless, JPEG baseline), as MP4
(H.264, 30 fps) and as GIF. Each (file, path) runs in a fresh child process, so every peak RSS is
that path's own; the child reports its peak RSS before and after the decode
(``ru_maxrss``) and the wall time of the decode.

Paths (``PATHS``; add one there and it is measured too; the gRPC ``Extract`` is ``--end-to-end``):

- ``old``: ``decode_video`` -> ``pixel_hash`` of every frame -> ``make_clips`` (the extractor
  before the bounded decoder);
- ``new``: ``decode_clips(hash_mode="sampled")``, what the server runs since issue 12 (the
  ``"sampled-v1"`` pixel hash; JPEG 2000 frames decoded at a reduced resolution);
- ``new-fullj2k``: the same with JPEG 2000 decoded at full size
  (``DecodeLimits(reduce_jpeg2000=False)``; the same as ``new`` for other formats);
- ``new-allhash``: ``decode_clips(hash_mode="all")``, what the server ran before issue 12's
  speed work (the every-frame hash: every frame converted, every DICOM frame decoded at full
  size).

``equal`` says whether the path's clips equal the ``old`` path's (checked in the child against
a saved copy of the old clips); when they do not, ``mean|max diff`` gives the mean and largest
absolute difference in gray levels (JPEG 2000 decoded reduced: a wavelet low-pass, not the
resize's filter).

``--breakdown`` prints, per case, where the served path's time goes instead of the matrix:
for a video, decoding every frame alone, then with each frame's gray conversion, then with the
every-frame sha256 (the pixel hash); for DICOM, one frame's decode through pydicom, and for
JPEG 2000 also through Pillow at full, half and quarter resolution (``reduce`` 0, 1, 2: the
wavelet levels a 224 px model input would not need).

``--threads-check`` prints, per DICOM case, the time to decode its first 8 frames on 1 and on 2
threads with each of pydicom's plugins for the syntax (whether the codec releases the GIL: only
then do the decode threads of ``lus.video.dicom_frames`` run frames in parallel).

``--end-to-end`` adds a row per case, ``server (new path)``: the real biomarker service
(``python -m biomarker_service``, CPU, no feature store, no audit) runs as a child process with
an untrained artifact of the benchmark's spec (``--width 16`` by default; ``--width 64`` is the
full-size model), and each case is sent as one ``Extract`` over gRPC on loopback. The time is the
client's wall time of the call (upload, decode, sampling, batcher, model); the memory is the
server's peak RSS (``VmHWM``, reset with ``clear_refs`` before each case) and its growth over
the server's RSS just before the case. One warm-up ``Extract`` of a small MP4 runs first, so
model and codec start-up costs are not in the rows. ``--server-paths new,old`` runs each case
against two servers one after the other: ``new`` is the service as it is, ``old`` the same
service with the pre-issue-12 served path (``PIXEL_HASH_MODE = "all"``, JPEG 2000 at full size;
started through ``--serve-old``, which patches the module constant and starts the service).
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import av
import numpy as np
import pydicom
from PIL import Image
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.encaps import encapsulate, generate_frames
from pydicom.pixels.encoders.base import (
    JPEG2000LosslessEncoder,
    JPEGLSLosslessEncoder,
    RLELosslessEncoder,
)
from pydicom.pixels.utils import pixel_array
from pydicom.uid import (
    ExplicitVRLittleEndian,
    JPEG2000Lossless,
    JPEGBaseline8Bit,
    JPEGLSLossless,
    RLELossless,
    UltrasoundMultiFrameImageStorage,
    generate_uid,
)
from scipy import ndimage

from lus.video import InputSpec
from lus.video.region import check_crop_mode

MiB = 1024 * 1024
REPO = Path(__file__).resolve().parents[1]
SERVER_LABEL = "server (new)"


# --- ultrasound-like frames -----------------------------------------------------------------


def ultrasound_frames(
    count: int, height: int, width: int, *, colour: bool, seed: int = 0
) -> Iterator[np.ndarray]:
    """``count`` frames of a convex-probe lung cine, ``(H, W)`` or ``(H, W, 3)`` uint8.

    Speckle is a smooth noise field scrolled a little each frame (so consecutive frames differ,
    as in a real loop, and video codecs have real work); the margins are black and static with
    burned-in text blocks, as scanner exports are.
    """
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:height, 0:width].astype(np.float32)
    apex_y, apex_x = -0.1 * height, width / 2
    radius = np.hypot(y - apex_y, x - apex_x)
    angle = np.arctan2(x - apex_x, y - apex_y)
    sector = (np.abs(angle) < 0.6) & (radius > 0.15 * height) & (radius < 1.05 * height)
    depth = np.clip((radius - 0.15 * height) / height, 0, 1)
    attenuation = (1.0 - 0.7 * depth).astype(np.float32)
    pad = count * 2 + 8
    coarse = rng.random(((height + pad) // 3 + 2, width // 3 + 2)).astype(np.float32)
    texture = ndimage.zoom(coarse, 3, order=1)[: height + pad, :width]
    texture = (texture * 150 + rng.random(texture.shape, dtype=np.float32) * 40).astype(np.float32)
    pleura_y = int(0.3 * height)
    text = np.zeros((height, width), dtype=bool)
    for k in range(6):  # static labels and a depth ruler in the margins
        top = int((0.05 + 0.08 * k) * height)
        text[top : top + max(2, height // 60), int(0.02 * width) : int(0.15 * width)] = True
    text[int(0.2 * height) : int(0.9 * height), int(0.93 * width) : int(0.94 * width) + 1] = True
    for i in range(count):
        shift = (i * 2) % pad
        image = texture[shift : shift + height] * attenuation
        wiggle = int(3 * np.sin(i / 4))
        image[pleura_y + wiggle : pleura_y + wiggle + max(2, height // 100)] += 120
        b_line = int(width * (0.45 + 0.1 * np.sin(i / 7)))
        image[pleura_y:, b_line : b_line + max(2, width // 120)] += 70
        frame = np.where(sector, np.clip(image, 0, 255), 0).astype(np.uint8)
        frame[text] = 230
        if not colour:
            yield frame
            continue
        rgb = np.repeat(frame[..., None], 3, axis=2)
        bar = np.linspace(255, 0, height, dtype=np.float32)[:, None]
        rgb[:, int(0.96 * width) :, 0] = bar.astype(np.uint8)
        rgb[:, int(0.96 * width) :, 1] = (bar * 0.6).astype(np.uint8)
        y0, x0 = int(0.45 * height), int(0.4 * width)
        box = rgb[y0 : y0 + height // 6, x0 : x0 + width // 6]
        flow = rng.random(box.shape[:2]) > 0.7
        box[flow] = (200, 30, 30) if i % 2 else (30, 60, 220)
        yield rgb


# --- files ----------------------------------------------------------------------------------


def _us_dataset(count: int, height: int, width: int, colour: bool) -> Dataset:
    ds = Dataset()
    ds.file_meta = FileMetaDataset()
    ds.file_meta.MediaStorageSOPClassUID = UltrasoundMultiFrameImageStorage
    ds.file_meta.MediaStorageSOPInstanceUID = generate_uid()
    ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds.SOPClassUID = UltrasoundMultiFrameImageStorage
    ds.SOPInstanceUID = ds.file_meta.MediaStorageSOPInstanceUID
    ds.Modality = "US"
    ds.Rows, ds.Columns, ds.NumberOfFrames = height, width, count
    ds.SamplesPerPixel = 3 if colour else 1
    ds.PhotometricInterpretation = "RGB" if colour else "MONOCHROME2"
    if colour:
        ds.PlanarConfiguration = 0
    ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 8, 8, 7, 0
    ds.FrameTime = 1000 / 30
    ds.FrameIncrementPointer = 0x00181063
    return ds


def write_dicom(path: Path, syntax: str, count: int, height: int, width: int) -> None:
    """An RGB ultrasound cine in ``syntax``: raw, rle, jpegls, j2k or jpeg (baseline)."""
    ds = _us_dataset(count, height, width, colour=True)
    frames = ultrasound_frames(count, height, width, colour=True)
    options: dict[str, Any] = {
        "rows": height,
        "columns": width,
        "samples_per_pixel": 3,
        "bits_allocated": 8,
        "bits_stored": 8,
        "pixel_representation": 0,
        "photometric_interpretation": "RGB",
        "planar_configuration": 0,
        "number_of_frames": 1,
    }
    if syntax == "raw":
        ds.PixelData = b"".join(frame.tobytes() for frame in frames)
    else:
        encoders = {
            "rle": (RLELosslessEncoder, RLELossless, "RGB"),
            "jpegls": (JPEGLSLosslessEncoder, JPEGLSLossless, "RGB"),
            "j2k": (JPEG2000LosslessEncoder, JPEG2000Lossless, "YBR_RCT"),
        }
        encoded: list[bytes] = []
        if syntax == "jpeg":
            uid, photometric = JPEGBaseline8Bit, "YBR_FULL_422"
            for frame in frames:
                buffer = io.BytesIO()
                Image.fromarray(frame).save(buffer, "JPEG", quality=90, subsampling=2)
                encoded.append(buffer.getvalue())
        else:
            encoder, uid, photometric = encoders[syntax]
            encoded = [encoder.encode(frame, **options) for frame in frames]
        ds.file_meta.TransferSyntaxUID = uid
        ds.PhotometricInterpretation = photometric
        ds.PixelData = encapsulate(encoded, has_bot=True)
        ds["PixelData"].is_undefined_length = True
        ds["PixelData"].VR = "OB"
        del encoded
    pydicom.dcmwrite(path, ds, enforce_file_format=True)


def write_video(path: Path, kind: str, count: int, height: int, width: int) -> None:
    """A gray cine as MP4 (H.264 if the build has libx264, else MPEG-4 part 2) or GIF."""
    if kind == "mp4":
        codec = "libx264" if "libx264" in av.codecs_available else "mpeg4"
        fmt, pix_fmt = "mp4", "yuv420p"
    else:
        codec, fmt, pix_fmt = "gif", "gif", "rgb8"
    with av.open(str(path), mode="w", format=fmt) as out:
        stream = out.add_stream(codec, rate=30)
        assert isinstance(stream, av.video.stream.VideoStream)
        stream.width, stream.height, stream.pix_fmt = width, height, pix_fmt
        if codec == "libx264":
            stream.options = {"preset": "veryfast", "crf": "23"}
        for frame in ultrasound_frames(count, height, width, colour=False):
            video_frame = av.VideoFrame.from_ndarray(frame, format="gray").reformat(format=pix_fmt)
            out.mux(stream.encode(video_frame))
        out.mux(stream.encode())


@dataclass(frozen=True)
class Case:
    name: str
    kind: str  # dicom-<syntax>, mp4, gif
    frames: int
    height: int
    width: int

    @property
    def filename(self) -> str:
        suffix = {"mp4": "mp4", "gif": "gif"}.get(self.kind, "dcm")
        return f"{self.kind}-{self.width}x{self.height}-{self.frames}f.{suffix}"

    def make(self, folder: Path) -> Path:
        path = folder / self.filename
        if not path.exists():  # the cases are reused between runs with the same folder
            partial = path.with_suffix(".partial")
            if self.kind.startswith("dicom-"):
                syntax = self.kind.removeprefix("dicom-")
                write_dicom(partial, syntax, self.frames, self.height, self.width)
            else:
                write_video(partial, self.kind, self.frames, self.height, self.width)
            partial.rename(path)
        return path


KINDS = ("dicom-raw", "dicom-rle", "dicom-jpegls", "dicom-j2k", "dicom-jpeg", "mp4", "gif")


# --- the paths measured ---------------------------------------------------------------------


def old_path(data: bytes, spec: InputSpec) -> np.ndarray:
    """What the extractor does today: every frame decoded, hashed, then sampled."""
    from lus.feature_store import pixel_hash
    from lus.video import decode_video, make_clips

    video = decode_video(data)
    pixel_hash(video.frames)
    return make_clips(video, spec)


def new_path(data: bytes, spec: InputSpec) -> np.ndarray:
    from lus.video import decode_clips

    return decode_clips(data, spec, hash_mode="sampled").clips


def new_fullj2k_path(data: bytes, spec: InputSpec) -> np.ndarray:
    from lus.video import DecodeLimits, decode_clips

    return decode_clips(data, spec, DecodeLimits(reduce_jpeg2000=False), hash_mode="sampled").clips


def new_allhash_path(data: bytes, spec: InputSpec) -> np.ndarray:
    from lus.video import decode_clips

    return decode_clips(data, spec, hash_mode="all").clips


PATHS: dict[str, Callable[[bytes, InputSpec], np.ndarray]] = {
    "old": old_path,
    "new": new_path,
    "new-fullj2k": new_fullj2k_path,
    "new-allhash": new_allhash_path,
}


def _status_kb(field: str, pid: int | str = "self") -> int | None:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith(field + ":"):
                return int(line.split()[1])
    except OSError:
        pass
    return None


def reset_peak_rss_kb() -> int:
    """Reset the peak RSS to the current RSS (Linux: ``clear_refs`` 5) and return it in KiB.

    Without the reset the peak would still hold whatever reading the file or importing cost;
    where it is not possible, the peak so far (``ru_maxrss``) is the baseline.
    """
    try:
        Path("/proc/self/clear_refs").write_text("5")
        current = _status_kb("VmRSS")
        if current is not None:
            return current
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss


def peak_rss_kb() -> int:
    peak = _status_kb("VmHWM")
    return peak if peak is not None else resource.getrusage(resource.RUSAGE_SELF).ru_maxrss


def child(path_name: str, file: Path, spec: InputSpec, reference: Path | None, repeat: int) -> None:
    """Run one path on one file ``repeat`` times in this (fresh) process; print one JSON line.

    ``seconds`` is the fastest run (the first also pays one-time costs: codec plugins load on
    first use); ``first_seconds`` the first. The peak RSS covers every run.
    """
    data = file.read_bytes()
    before = reset_peak_rss_kb()
    times: list[float] = []
    clips: np.ndarray | None = None
    error = ""
    for _ in range(repeat):
        started = time.perf_counter()
        try:
            clips = PATHS[path_name](data, spec)
        except Exception as err:  # reported, not raised: one failing case must not end the run
            error = f"{type(err).__name__}: {str(err)[:120]}"
            break
        times.append(time.perf_counter() - started)
    peak = peak_rss_kb()
    equal: bool | None = None
    diff: tuple[float, int] | None = None
    if clips is not None and reference is not None and not error:
        if path_name == "old":
            np.save(reference, clips)
        elif reference.exists():
            old = np.load(reference)
            equal = bool(np.array_equal(old, clips))
            if not equal and old.shape == clips.shape:
                gap = np.abs(old.astype(np.int16) - clips.astype(np.int16))
                diff = (float(gap.mean()), int(gap.max()))
    print(
        json.dumps(
            {
                "seconds": min(times) if times else 0.0,
                "first_seconds": times[0] if times else 0.0,
                "rss_before_mb": before / 1024,
                "rss_peak_mb": peak / 1024,
                "equal": equal,
                "diff": diff,
                "error": error,
            }
        )
    )


def _warm_imports() -> None:
    """Import what every path imports before measuring, so the RSS baseline includes it."""
    import lus.feature_store
    import lus.video  # noqa: F401


def run_child(
    path_name: str, file: Path, spec_text: str, reference: Path, *, timeout: float, repeat: int
) -> dict[str, object]:
    command = [sys.executable, __file__, "--child", path_name, str(file), "--spec", spec_text]
    command += ["--reference", str(reference), "--repeat", str(repeat)]
    try:
        done = subprocess.run(command, capture_output=True, text=True, timeout=timeout, check=False)
    except subprocess.TimeoutExpired:
        return {"error": f"timed out after {timeout:.0f} s"}
    lines = [line for line in done.stdout.splitlines() if line.startswith("{")]
    if done.returncode != 0 or not lines:
        tail = (done.stderr.strip().splitlines() or ["no output"])[-1]
        return {"error": f"exit {done.returncode}: {tail[:120]}"}
    result: dict[str, object] = json.loads(lines[-1])
    return result


# --- end to end: one gRPC Extract against the real service, in a child process -------------


class EndToEnd:
    """The biomarker service as a child process, and one ``Extract`` per case against it."""

    def __init__(
        self,
        spec: InputSpec,
        width: int,
        folder: Path,
        stack: contextlib.ExitStack,
        *,
        served: str = "new",
    ):
        if str(REPO) not in sys.path:  # tests.fakes / tests.processes: the repository's helpers
            sys.path.insert(0, str(REPO))
        from lus.clients.biomarker import BiomarkerClient
        from tests.fakes import untrained_artifact
        from tests.processes import BIOMARKER_PORT, server_process

        artifact = untrained_artifact(
            folder / f"bench-w{width}.safetensors", spec=spec, version="bench", width=width
        )
        env = {
            "LUS_BIOMARKER_ARTIFACT": str(artifact),
            "LUS_BIOMARKER_PORT": "0",
            "LUS_BIOMARKER_DEVICE": "cpu",
            "LUS_BIOMARKER_FEATURE_STORE": "none",
            "LUS_BIOMARKER_AUDIT_SINK": "none",
            "PYTHONPATH": os.pathsep.join(
                p for p in (str(REPO), os.environ.get("PYTHONPATH", "")) if p
            ),
        }
        module, args = "biomarker_service", tuple[str, ...]()
        if served == "old":  # this script, patching the served path, then the service
            module, args = "benchmarks.decode_throughput", ("--serve-old",)
            env["LUS_BIOMARKER_DECODE_JPEG2000_REDUCED"] = "false"
        self.served = served
        self.server = stack.enter_context(server_process(module, env, BIOMARKER_PORT, args=args))
        self.pid = self.server.proc.pid
        port = self.server.ports["grpc"]
        self.client = stack.enter_context(
            BiomarkerClient(f"127.0.0.1:{port}", hash_first=False, timeout_s=3600.0)
        )
        self.idle_rss_kb = _status_kb("VmRSS", self.pid) or 0
        self.resettable = self._reset_peak()

    def _reset_peak(self) -> bool:
        try:
            Path(f"/proc/{self.pid}/clear_refs").write_text("5")
            return True
        except OSError:
            return False

    def warm_up(self, file: Path) -> dict[str, object]:
        return self.extract(file, repeat=1)

    def extract(self, file: Path, *, repeat: int) -> dict[str, object]:
        """``repeat`` Extracts of ``file``: fastest and first wall time, server peak RSS."""
        import grpc

        data = file.read_bytes()
        self._reset_peak()
        before = _status_kb("VmRSS", self.pid) or 0
        times: list[float] = []
        status = "OK"
        for _ in range(repeat):
            started = time.perf_counter()
            try:
                self.client.extract_bytes(data)
            except grpc.RpcError as err:
                code = err.code() if isinstance(err, grpc.Call) else None
                details = err.details() if isinstance(err, grpc.Call) else str(err)
                status = f"{code.name if code else 'UNKNOWN'}: {(details or '')[:80]}"
                break
            times.append(time.perf_counter() - started)
        peak = _status_kb("VmHWM", self.pid) or 0
        return {
            "seconds": min(times) if times else 0.0,
            "first_seconds": times[0] if times else 0.0,
            "rss_before_mb": before / 1024,
            "rss_peak_mb": peak / 1024,
            "status": status,
        }


def _best_of(repeat: int, work: Callable[[], object]) -> float:
    times = []
    for _ in range(max(1, repeat)):
        started = time.perf_counter()
        work()
        times.append(time.perf_counter() - started)
    return min(times)


def _video_passes(data: bytes, step: str) -> None:
    import hashlib

    digest = hashlib.sha256()
    with av.open(io.BytesIO(data), mode="r") as container:
        stream = container.streams.video[0]
        stream.thread_type = "AUTO"
        for frame in container.decode(stream):
            if step == "decode":
                continue
            gray = frame.to_ndarray(format="gray")
            if step == "sha256":
                digest.update(np.ascontiguousarray(gray).data)


def breakdown(file: Path, repeat: int) -> None:
    """Print where the time of ``file``'s decode goes (``--breakdown``)."""
    data = file.read_bytes()
    if file.suffix != ".dcm":
        for step, label in (
            ("decode", "decode every frame"),
            ("gray", "+ gray conversion"),
            ("sha256", "+ sha256 (pixel hash)"),
        ):
            seconds = _best_of(repeat, lambda s=step: _video_passes(data, s))  # type: ignore[misc]
            print(f"  {file.name}: {label:<34}{seconds:>8.2f} s")
        return
    ds = pydicom.dcmread(io.BytesIO(data))
    frames = int(ds.get("NumberOfFrames") or 1)
    # The plugin the served path prefers (lus.video.dicom_frames.PREFERRED_PLUGINS).
    plugin = "pyjpegls" if ds.file_meta.TransferSyntaxUID == JPEGLSLossless else ""
    seconds = _best_of(repeat, lambda: pixel_array(ds, index=0, decoding_plugin=plugin))
    print(f"  {file.name}: one frame through pydicom{'':<10}{seconds:>8.3f} s (x {frames} frames)")
    if ds.file_meta.TransferSyntaxUID == JPEG2000Lossless:
        first = next(generate_frames(ds.PixelData, number_of_frames=frames))
        for reduce in (0, 1, 2):

            def pillow(reduce: int = reduce) -> None:
                image = Image.open(io.BytesIO(first))
                image.reduce = reduce  # type: ignore[assignment]  # JPEG 2000 option
                image.load()

            seconds = _best_of(repeat, pillow)
            print(f"  {file.name}: one frame, Pillow reduce={reduce}{'':<11}{seconds:>8.3f} s")


def threads_check(file: Path, repeat: int) -> None:
    """Print 8 frames' decode time on 1 and 2 threads per plugin (``--threads-check``)."""
    from concurrent.futures import ThreadPoolExecutor

    from pydicom.encaps import encapsulate, generate_fragmented_frames
    from pydicom.pixels.decoders.base import get_decoder
    from pydicom.pixels.utils import as_pixel_options

    ds = pydicom.dcmread(file)
    syntax = ds.file_meta.TransferSyntaxUID
    if not syntax.is_compressed:
        return
    count = int(ds.get("NumberOfFrames") or 1)
    frames = generate_fragmented_frames(ds.PixelData, number_of_frames=count)
    codestreams = [encapsulate([b"".join(next(frames))]) for _ in range(min(8, count))]
    options = as_pixel_options(ds, number_of_frames=1)
    options.pop("extended_offsets", None)
    decoder = get_decoder(syntax)
    for plugin in decoder.available_plugins:

        def one(data: bytes, plugin: str = plugin) -> object:
            return decoder.as_array(data, decoding_plugin=plugin, as_rgb=False, **options)  # type: ignore[arg-type]

        one(codestreams[0])
        seconds = {}
        for threads in (1, 2):
            with ThreadPoolExecutor(threads) as pool:
                seconds[threads] = _best_of(repeat, lambda p=pool: list(p.map(one, codestreams)))  # type: ignore[misc]
        print(
            f"  {file.name}: {plugin:<10} {len(codestreams)} frames: 1 thread {seconds[1]:.2f} s,"
            f" 2 threads {seconds[2]:.2f} s ({seconds[1] / seconds[2]:.2f}x)"
        )


def bool_or_none(value: object) -> bool | None:
    return None if value is None else bool(value)


def parse_spec(text: str) -> InputSpec:
    frames, size, clips, *crop = text.split(",")
    mode = check_crop_mode(crop[0] if crop else "none")
    return InputSpec(frames_per_clip=int(frames), size=int(size), clips=int(clips), crop=mode)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sizes", default="1080x1080,800x600", help="WxH list")
    parser.add_argument("--frames", default="100,600", help="frame counts (600 = 20 s at 30 fps)")
    parser.add_argument("--cases", default=",".join(KINDS), help="kinds: " + ", ".join(KINDS))
    parser.add_argument("--paths", default=",".join(PATHS), help="paths: " + ", ".join(PATHS))
    parser.add_argument("--spec", default="15,224,4,none", help="frames,size,clips[,crop]")
    parser.add_argument("--folder", type=Path, help="where the cases are written (reused)")
    parser.add_argument("--timeout", type=float, default=900.0, help="seconds per measurement")
    parser.add_argument("--repeat", type=int, default=2, help="runs per measurement (fastest)")
    parser.add_argument(
        "--small", action="store_true", help="256x256 and 160x120, 30 and 90 frames: a quick check"
    )
    parser.add_argument(
        "--end-to-end",
        action="store_true",
        help=f"also one gRPC Extract per case against the real service ({SERVER_LABEL!r})",
    )
    parser.add_argument(
        "--width", type=int, default=16, help="--end-to-end model width (64: the full model)"
    )
    parser.add_argument(
        "--breakdown", action="store_true", help="where the decode time goes, per case"
    )
    parser.add_argument(
        "--threads-check", action="store_true", help="DICOM codecs: 1 vs 2 threads (the GIL)"
    )
    parser.add_argument(
        "--server-paths",
        default="new",
        help="--end-to-end servers: new (as served), old (every-frame hash, full-size JPEG 2000)",
    )
    parser.add_argument("--serve-old", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--child", nargs=2, metavar=("PATH", "FILE"), help=argparse.SUPPRESS)
    parser.add_argument("--reference", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve_old:
        serve_old()
        return
    if args.child:
        _warm_imports()
        spec = parse_spec(args.spec)
        child(args.child[0], Path(args.child[1]), spec, args.reference, args.repeat)
        return
    if args.small:
        args.sizes, args.frames = "256x256,160x120", "30,90"
    sizes = [tuple(int(n) for n in s.split("x")) for s in args.sizes.split(",")]
    counts = [int(n) for n in args.frames.split(",")]
    kinds = [k for k in args.cases.split(",") if k]
    paths = [p for p in args.paths.split(",") if p]
    if "old" in paths:  # the reference the others are compared with: run it first
        paths = ["old", *[p for p in paths if p != "old"]]
    folder = args.folder or Path(tempfile.mkdtemp(prefix="lus-decode-bench-"))
    folder.mkdir(parents=True, exist_ok=True)
    if args.breakdown or args.threads_check:
        print(f"load average {' '.join(f'{n:.2f}' for n in os.getloadavg())}")
        check = threads_check if args.threads_check else breakdown
        for kind in kinds:
            for width, height in sizes:
                for count in counts:
                    check(Case(kind, kind, count, height, width).make(folder), args.repeat)
        return
    print(f"cases in {folder}; spec {args.spec}; one fresh process per measurement")
    print(f"load average {' '.join(f'{n:.2f}' for n in os.getloadavg())} on {os.cpu_count()} CPUs")
    with contextlib.ExitStack() as stack:
        servers = []
        if args.end_to_end:
            for served in [s for s in args.server_paths.split(",") if s]:
                server = EndToEnd(parse_spec(args.spec), args.width, folder, stack, served=served)
                warm = server.warm_up(Case("mp4", "mp4", 30, 120, 160).make(folder))
                print(
                    f"server ({served} path) pid {server.pid}, model width {args.width}; idle RSS"
                    f" {server.idle_rss_kb / 1024:.0f} MB; warm-up Extract {warm['status']},"
                    f" {float(str(warm['seconds'])):.2f} s; peak reset per case:"
                    f" {'yes' if server.resettable else 'NO (peak is since start)'}"
                )
                servers.append(server)
        run_cases(
            args, folder, sizes=sizes, counts=counts, kinds=kinds, paths=paths, servers=servers
        )
    print(f"load average {' '.join(f'{n:.2f}' for n in os.getloadavg())} at the end")


def serve_old() -> None:
    """The biomarker service with the served path of before issue 12's speed work."""
    from biomarker_service import extractor
    from biomarker_service.server import main as serve
    from lus.feature_store import PIXEL_HASH_ALL_FRAMES

    extractor.PIXEL_HASH_MODE = "all"
    extractor.PIXEL_HASH_SCHEME = PIXEL_HASH_ALL_FRAMES
    sys.argv = sys.argv[:1]
    serve()


def run_cases(
    args: argparse.Namespace,
    folder: Path,
    *,
    sizes: list[tuple[int, ...]],
    counts: list[int],
    kinds: list[str],
    paths: list[str],
    servers: list[EndToEnd],
) -> None:
    header = f"{'case':<34}{'MB':>8}  {'path':<18}{'seconds':>9}{'first s':>9}"
    header += f"{'peak RSS MB':>13}{'+decode MB':>12}  equal"
    if servers:
        header += "  (server rows: status; +MB over the server's RSS before the case)"
    print(header)
    for kind in kinds:
        for width, height in sizes:
            for count in counts:
                case = Case(kind, kind, count, height, width)
                started = time.perf_counter()
                file = case.make(folder)
                made = time.perf_counter() - started
                size_mb = file.stat().st_size / MiB
                reference = folder / (file.name + f".{args.spec.replace(',', '_')}.npy")
                reference.unlink(missing_ok=True)
                for path_name in paths:
                    result = run_child(
                        path_name,
                        file,
                        args.spec,
                        reference,
                        timeout=args.timeout,
                        repeat=args.repeat,
                    )
                    label = case.filename.rsplit(".", 1)[0]
                    if result.get("error"):
                        print(f"{label:<34}{size_mb:>8.1f}  {path_name:<18}  {result['error']}")
                        continue
                    seconds = float(str(result["seconds"]))
                    first = float(str(result["first_seconds"]))
                    peak = float(str(result["rss_peak_mb"]))
                    grown = peak - float(str(result["rss_before_mb"]))
                    equal = {None: "-", True: "yes", False: "NO"}[bool_or_none(result["equal"])]
                    if result.get("diff"):
                        mean, most = (float(n) for n in result["diff"])  # type: ignore[attr-defined]
                        equal += f" (mean|max diff {mean:.2f}|{most:.0f})"
                    print(
                        f"{label:<34}{size_mb:>8.1f}  {path_name:<18}{seconds:>9.2f}{first:>9.2f}"
                        f"{peak:>13.0f}{grown:>12.0f}  {equal}"
                    )
                for server in servers:
                    label = case.filename.rsplit(".", 1)[0]
                    result = server.extract(file, repeat=args.repeat)
                    seconds = float(str(result["seconds"]))
                    first = float(str(result["first_seconds"]))
                    peak = float(str(result["rss_peak_mb"]))
                    grown = peak - float(str(result["rss_before_mb"]))
                    served = f"server ({server.served})"
                    print(
                        f"{label:<34}{size_mb:>8.1f}  {served:<18}{seconds:>9.2f}"
                        f"{first:>9.2f}{peak:>13.0f}{grown:>12.0f}  -  {result['status']}"
                    )
                sys.stdout.flush()
                if made > 1:
                    print(f"  (made {file.name} in {made:.0f} s)")


if __name__ == "__main__":
    main()
