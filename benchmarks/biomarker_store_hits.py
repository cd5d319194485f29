"""What each way of answering a repeat costs: model, pixel-hash hit, content hit, Lookup.

One server on 127.0.0.1 (SQLite feature store in a temporary folder, PyTorch on the chosen
device) and DICOM cine loops of synthetic frames. Per path, the p50/p99 latency of:

* model: a file never seen (decode, input check, clips, forward pass, store write);
* pixel hit: a re-export of a seen file (other bytes and UID, same pixels): decoded, checked and
  answered by pixel hash, no model;
* content hit: the same bytes again (``Extract``): answered by their sha256 before decoding;
* lookup: ``Lookup`` by content sha256, what the shipped client sends first (no upload).

Run from the repository root:

    PYTHONPATH=. python benchmarks/biomarker_store_hits.py --frames 60 --video-size 256

Figures only; no asserts.
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import io
import statistics
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path

import grpc
import numpy as np
import pydicom
import torch
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.uid import UID, ExplicitVRLittleEndian, UltrasoundMultiFrameImageStorage

from biomarker_service.artifact import ArtifactInfo, Provenance, save_artifact
from biomarker_service.model import tsm_resnet18
from biomarker_service.server import create_server
from biomarker_service.settings import BiomarkerSettings
from lus.biomarker.v1 import biomarker_service_pb2 as pb
from lus.biomarker.v1 import biomarker_service_pb2_grpc as pb_grpc
from lus.schema import load_schema
from lus.synthetic import render_frames, sample_case
from lus.video import InputSpec


def dicom(frames: np.ndarray, uid: str) -> bytes:
    ds = Dataset()
    ds.file_meta = FileMetaDataset()
    ds.file_meta.MediaStorageSOPClassUID = UltrasoundMultiFrameImageStorage
    ds.file_meta.MediaStorageSOPInstanceUID = UID(uid)
    ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds.SOPClassUID, ds.SOPInstanceUID, ds.Modality = UltrasoundMultiFrameImageStorage, uid, "US"
    ds.Rows, ds.Columns = frames.shape[1:]
    ds.NumberOfFrames = frames.shape[0]
    ds.SamplesPerPixel, ds.PhotometricInterpretation = 1, "MONOCHROME2"
    ds.BitsAllocated = ds.BitsStored = 8
    ds.HighBit, ds.PixelRepresentation = 7, 0
    ds.PixelData = frames.tobytes()
    buffer = io.BytesIO()
    pydicom.dcmwrite(buffer, ds, enforce_file_format=True)
    return buffer.getvalue()


def timed(calls: list[Callable[[], object]]) -> str:
    latencies = []
    for call in calls:
        started = time.perf_counter()
        call()
        latencies.append(time.perf_counter() - started)
    ordered = sorted(latencies)
    p50 = statistics.median(ordered) * 1000
    p99 = ordered[min(len(ordered) - 1, round(0.99 * (len(ordered) - 1)))] * 1000
    return f"p50 {p50:8.2f} ms   p99 {p99:8.2f} ms   ({len(ordered)} calls)"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--videos", type=int, default=12)
    parser.add_argument("--frames", type=int, default=60, help="frames of each cine loop")
    parser.add_argument("--video-size", type=int, default=256)
    parser.add_argument("--width", type=int, default=16, help="model width")
    parser.add_argument("--size", type=int, default=112, help="model input size")
    parser.add_argument("--device", default="auto")
    args = parser.parse_args()
    spec = InputSpec(frames_per_clip=15, size=args.size, clips=4)
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        torch.manual_seed(0)
        model = tsm_resnet18(schema=load_schema(), spec=spec, width=args.width).eval()
        provenance = Provenance(training_data="random weights", notice="benchmark")
        info = ArtifactInfo("bench", load_schema(), spec, args.width, provenance)
        save_artifact(root / "bench.safetensors", model, info)
        rng = np.random.default_rng(0)
        frames = [
            render_frames(sample_case(rng), rng, frames=args.frames, height=args.video_size,
                          width=args.video_size)
            for _ in range(args.videos)
        ]  # fmt: skip
        files = [dicom(f, f"1.2.826.0.1.3680043.10.1.{i}") for i, f in enumerate(frames)]
        copies = [dicom(f, f"1.2.826.0.1.3680043.10.2.{i}") for i, f in enumerate(frames)]
        settings = BiomarkerSettings(
            artifact=root / "bench.safetensors",
            port=0,
            device=args.device,
            feature_store="sqlite",
            feature_store_path=root / "features.sqlite",
            max_wait_ms=0,
        )
        loop = asyncio.new_event_loop()
        thread = threading.Thread(target=loop.run_forever, daemon=True)
        thread.start()
        server = asyncio.run_coroutine_threadsafe(create_server(settings), loop).result(300)
        try:
            with grpc.insecure_channel(f"127.0.0.1:{server.port}") as channel:
                stub = pb_grpc.BiomarkerServiceStub(channel)
                warm_up = dicom(np.ascontiguousarray(frames[0][::-1]), "1.9")
                stub.Extract(pb.ExtractRequest(video=warm_up), timeout=600)

                def extract(data: bytes) -> Callable[[], object]:
                    return lambda: stub.Extract(pb.ExtractRequest(video=data), timeout=600)

                def lookup(data: bytes) -> Callable[[], object]:
                    digest = hashlib.sha256(data).hexdigest()
                    return lambda: stub.Lookup(pb.LookupRequest(content_sha256=digest))

                size_mib = len(files[0]) / 2**20
                print(
                    f"{args.videos} DICOM cine loops of {args.frames} x {args.video_size}px, "
                    f"{size_mib:.1f} MiB each; model {server.extractor.model}"
                )
                print(f"model        {timed([extract(f) for f in files])}")
                print(f"pixel hit    {timed([extract(f) for f in copies])}")
                print(f"content hit  {timed([extract(f) for f in files])}")
                print(f"lookup       {timed([lookup(f) for f in files])}")
        finally:
            asyncio.run_coroutine_threadsafe(server.stop(5), loop).result(60)
            loop.call_soon_threadsafe(loop.stop)
            thread.join(60)
            loop.close()


if __name__ == "__main__":
    main()
