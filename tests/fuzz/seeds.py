"""Seed inputs for the fuzz corpus: small, valid, built at run time (nothing binary in the repo).

Every DICOM seed carries ``PHI_NAME`` and ``PHI_ID``; neither may ever appear in a reply, a log
line or an audit record of a server that was sent it, mutated or not.
"""

from __future__ import annotations

import io
from dataclasses import dataclass
from functools import cache

import numpy as np

PHI_NAME = "Fuzzer^Patricia^PHIFUZZ"
PHI_ID = "MRN-PHIFUZZ-7731"
PHI_MARKERS = (PHI_NAME, PHI_ID, "PHIFUZZ")
"""What must never come back: the planted patient name and ID (and their common part)."""

FRAMES = 12
SIZE = 32


@dataclass(frozen=True)
class VideoSeed:
    """A valid upload: its bytes, the container it is (``VideoFormat`` name) and how it was made."""

    name: str
    data: bytes
    format: str


def _frames(seed: int, frames: int = FRAMES, size: int = SIZE) -> np.ndarray:
    """Moving gray frames (a bright band that drifts), so adequacy checks see motion."""
    rng = np.random.default_rng(seed)
    base = rng.integers(0, 60, (size, size), dtype=np.uint8)
    out = np.empty((frames, size, size), dtype=np.uint8)
    for i in range(frames):
        frame = base.copy()
        row = (i * 2) % size
        frame[row : row + 3, :] = 220
        out[i] = frame
    return out


def _encode(frames: np.ndarray, container: str, codec: str, pix_fmt: str) -> bytes:
    import av

    buffer = io.BytesIO()
    with av.open(buffer, mode="w", format=container) as out:
        # MPEG-1 allows only the broadcast frame rates.
        stream = out.add_stream(codec, rate=25 if codec == "mpeg1video" else 15)
        stream.width, stream.height = frames.shape[2], frames.shape[1]
        stream.pix_fmt = pix_fmt
        for gray in frames:
            rgb = np.repeat(gray[..., None], 3, axis=2)
            frame = av.VideoFrame.from_ndarray(rgb, format="rgb24")
            out.mux(stream.encode(frame))
        out.mux(stream.encode())
    return buffer.getvalue()


def _dicom(
    frames: np.ndarray, transfer_syntax: str, overrides: dict[str, object] | None = None
) -> bytes:
    from pydicom.dataset import Dataset, FileMetaDataset
    from pydicom.uid import (
        DeflatedExplicitVRLittleEndian,
        ExplicitVRLittleEndian,
        ImplicitVRLittleEndian,
        UltrasoundMultiFrameImageStorage,
        generate_uid,
    )

    ds = Dataset()
    ds.file_meta = FileMetaDataset()
    ds.file_meta.MediaStorageSOPClassUID = UltrasoundMultiFrameImageStorage
    ds.file_meta.MediaStorageSOPInstanceUID = generate_uid(entropy_srcs=["fuzz", transfer_syntax])
    ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds.SOPClassUID = UltrasoundMultiFrameImageStorage
    ds.SOPInstanceUID = ds.file_meta.MediaStorageSOPInstanceUID
    ds.StudyInstanceUID = generate_uid(entropy_srcs=["fuzz-study"])
    ds.SeriesInstanceUID = generate_uid(entropy_srcs=["fuzz-series"])
    ds.Modality, ds.SeriesNumber, ds.InstanceNumber = "US", 1, 1
    ds.PatientName, ds.PatientID = PHI_NAME, PHI_ID
    ds.Rows, ds.Columns = frames.shape[1], frames.shape[2]
    ds.NumberOfFrames = frames.shape[0]
    ds.SamplesPerPixel, ds.PhotometricInterpretation = 1, "MONOCHROME2"
    ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 8, 8, 7, 0
    ds.FrameTime, ds.FrameIncrementPointer = 66.7, 0x00181063
    ds.PixelData = frames.tobytes()
    for keyword, value in (overrides or {}).items():
        if value is None:
            delattr(ds, keyword)
        else:
            setattr(ds, keyword, value)
    if transfer_syntax in (ImplicitVRLittleEndian, DeflatedExplicitVRLittleEndian):
        ds.file_meta.TransferSyntaxUID = transfer_syntax  # written so by save_as
    elif transfer_syntax != ExplicitVRLittleEndian:
        ds.compress(transfer_syntax)  # an encoder plugin that is missing raises: seed skipped
    buffer = io.BytesIO()
    ds.save_as(buffer, enforce_file_format=True)
    return buffer.getvalue()


DICOM_SYNTAXES = {
    "explicit-le": "1.2.840.10008.1.2.1",
    "implicit-le": "1.2.840.10008.1.2",
    "deflated": "1.2.840.10008.1.2.1.99",
    "rle": "1.2.840.10008.1.2.5",
    "jpeg-ls": "1.2.840.10008.1.2.4.80",
    "jpeg2000": "1.2.840.10008.1.2.4.90",
}
"""Transfer syntaxes of the DICOM seeds: uncompressed (both VRs), deflated, and three lossless
codecs the server decodes with plugins."""

CONTAINERS = (
    ("mp4-mpeg4", "mp4", "mpeg4", "yuv420p", "VIDEO_FORMAT_MP4"),
    ("mp4-h264", "mp4", "libx264", "yuv420p", "VIDEO_FORMAT_MP4"),
    ("avi-mjpeg", "avi", "mjpeg", "yuvj420p", "VIDEO_FORMAT_AVI"),
    ("mov-mpeg4", "mov", "mpeg4", "yuv420p", "VIDEO_FORMAT_MOV"),
    ("mpeg-mpeg1", "mpeg", "mpeg1video", "yuv420p", "VIDEO_FORMAT_MPEG"),
    ("gif", "gif", "gif", "rgb8", "VIDEO_FORMAT_GIF"),
)


@cache
def video_seeds() -> tuple[VideoSeed, ...]:
    """One valid file per container and DICOM transfer syntax this machine can write."""
    seeds = []
    for i, (name, container, codec, pix_fmt, fmt) in enumerate(CONTAINERS):
        try:
            seeds.append(VideoSeed(name, _encode(_frames(i), container, codec, pix_fmt), fmt))
        except Exception:  # an encoder missing from this FFmpeg build: fewer seeds, not a failure
            continue
    for i, (name, syntax) in enumerate(DICOM_SYNTAXES.items()):
        try:
            data = _dicom(_frames(100 + i), syntax)
        except Exception:  # pydicom lacks this encoder here
            continue
        seeds.append(VideoSeed(f"dicom-{name}", data, "VIDEO_FORMAT_DICOM"))
    return tuple(seeds)


DICOM_LIES: dict[str, dict[str, object]] = {
    "huge-rows-cols": {"Rows": 65535, "Columns": 65535},
    "huge-frames": {"NumberOfFrames": 2_147_483_647},
    "zero-frames": {"NumberOfFrames": 0},
    "negative-frames": {"NumberOfFrames": -5},
    "zero-size": {"Rows": 0, "Columns": 0},
    "bits-64": {"BitsAllocated": 64, "BitsStored": 64, "HighBit": 63},
    "bits-1": {"BitsAllocated": 1, "BitsStored": 1, "HighBit": 0},
    "bits-12": {"BitsAllocated": 12, "BitsStored": 12, "HighBit": 11},
    "rgb-claimed": {"SamplesPerPixel": 3, "PhotometricInterpretation": "RGB"},
    "ybr-claimed": {"PhotometricInterpretation": "YBR_FULL_422"},
    "palette-no-lut": {"PhotometricInterpretation": "PALETTE COLOR"},
    "no-pixels": {"PixelData": None},
    "short-pixels": {"PixelData": b"\x00" * 100},
    "signed": {"PixelRepresentation": 1},
    "frame-time-zero": {"FrameTime": 0},
    "frame-time-negative": {"FrameTime": -66.7},
    "huge-frame-time": {"FrameTime": 1e300},
    "no-frame-count": {"NumberOfFrames": None},
    "planar": {"PlanarConfiguration": 1},
    "not-ultrasound": {"Modality": "CT", "SOPClassUID": "1.2.840.10008.5.1.4.1.1.2"},
}
"""Uncompressed DICOM whose header lies about its pixels: sizes that would need terabytes,
bit depths and colour models the data does not have, missing or short pixel data."""


@cache
def dicom_lies() -> tuple[VideoSeed, ...]:
    """One explicit-VR DICOM per entry of ``DICOM_LIES`` (the planted patient fields too)."""
    seeds = []
    for i, (name, overrides) in enumerate(DICOM_LIES.items()):
        try:
            data = _dicom(_frames(200 + i), DICOM_SYNTAXES["explicit-le"], overrides)
        except Exception:  # pydicom refused to write this lie: fewer seeds
            continue
        seeds.append(VideoSeed(f"dicom-lie-{name}", data, "VIDEO_FORMAT_DICOM"))
    return tuple(seeds)


def raw_frames_seed(seed: int = 7) -> tuple[int, int, int, int, bytes]:
    """(count, height, width, channels, pixels) of a valid ``RawFrames`` upload."""
    frames = _frames(seed)
    return frames.shape[0], frames.shape[1], frames.shape[2], 1, frames.tobytes()


def vector_seed(length: int, seed: int = 0) -> list[float]:
    """A plausible biomarker vector: probabilities in [0, 1]."""
    rng = np.random.default_rng(seed)
    return [float(v) for v in rng.random(length)]


TASK_NAMES = ("fuzz_task", "severity", "disease", "fuzz-task-2", "a" * 63)
"""Valid names: the registered task first, then valid names nobody registered."""
