"""Real DICOM and video files for the identity tests, and a fresh computation to compare with."""

from __future__ import annotations

import asyncio
import io
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import av
import numpy as np
import pydicom
import torch
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.uid import UID, ExplicitVRLittleEndian, UltrasoundMultiFrameImageStorage

from biomarker_service.artifact import load_artifact
from biomarker_service.extractor import BiomarkerExtractor, Extraction
from biomarker_service.torch_backend import TorchModelThread
from lus.synthetic import render_frames, sample_case


def cine(seed: int, frames: int = 8, size: int = 48) -> np.ndarray:
    """A synthetic B-mode cine loop: different seeds give different pixels."""
    rng = np.random.default_rng(seed)
    return render_frames(sample_case(rng), rng, frames=frames, height=size, width=size)


def dicom_bytes(frames: np.ndarray, uid: str, *, patient: str = "Doe^Jane") -> bytes:
    """An Ultrasound Multi-frame Image, Part 10, as a modality writes it (patient data too)."""
    ds = Dataset()
    ds.file_meta = FileMetaDataset()
    ds.file_meta.MediaStorageSOPClassUID = UltrasoundMultiFrameImageStorage
    ds.file_meta.MediaStorageSOPInstanceUID = UID(uid)
    ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds.SOPClassUID = UltrasoundMultiFrameImageStorage
    ds.SOPInstanceUID = uid
    ds.Modality = "US"
    ds.PatientName = patient
    ds.Rows, ds.Columns = frames.shape[1:]
    ds.NumberOfFrames = frames.shape[0]
    ds.SamplesPerPixel = 1
    ds.PhotometricInterpretation = "MONOCHROME2"
    ds.BitsAllocated = ds.BitsStored = 8
    ds.HighBit = 7
    ds.PixelRepresentation = 0
    ds.FrameTime = 50.0
    ds.FrameIncrementPointer = 0x00181063
    ds.PixelData = np.ascontiguousarray(frames, dtype=np.uint8).tobytes()
    buffer = io.BytesIO()
    pydicom.dcmwrite(buffer, ds, enforce_file_format=True)
    return buffer.getvalue()


def mp4_bytes(frames: np.ndarray, codec: str = "libx264") -> bytes:
    buffer = io.BytesIO()
    with av.open(buffer, mode="w", format="mp4") as out:
        stream = out.add_stream(codec, rate=15)
        assert isinstance(stream, av.VideoStream)
        stream.height, stream.width = frames.shape[1:]
        stream.pix_fmt = "yuv420p"
        for frame in frames:
            rgb = np.repeat(frame[..., None], 3, axis=2)
            out.mux(stream.encode(av.VideoFrame.from_ndarray(rgb, format="rgb24")))
        out.mux(stream.encode())
    return buffer.getvalue()


class Fresh:
    """``BiomarkerExtractor.extract`` with no store and no batcher: the answer to compare with.

    One forward pass per video of all its clips, as the server makes with ``max_batch_size``
    equal to the clips per video, so the two agree to the last bit.
    """

    def __init__(self, artifact: Path) -> None:
        model, info = load_artifact(artifact)
        self._pool = ThreadPoolExecutor(1)
        runner = TorchModelThread(model, torch.device("cpu"))
        self.extractor = BiomarkerExtractor(runner, info, self._pool)

    def __call__(self, data: bytes) -> Extraction:
        return asyncio.run(self.extractor.extract(data))

    def close(self) -> None:
        self.extractor.runner.close()
        self._pool.shutdown()
