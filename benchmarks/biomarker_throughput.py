"""Biomarker tier throughput: videos/s and p50/p99 latency per backend and concurrency.

Two modes per backend:
* model-only: pre-sampled clips go through the dynamic batcher and the backend (no gRPC, no
  decode), ``concurrency`` callers each waiting for their answer before sending the next;
* end-to-end: MP4 bytes over real gRPC to a server on 127.0.0.1 (decode pool, clip sampling,
  batcher, backend; feature store off so every request costs model time).

Backends: torch (eager; fp32 on CPU, bf16 + channels_last on CUDA), onnx (ONNX Runtime fp32),
onnx-int8 (static QDQ int8, CPU only; its accuracy cost vs torch fp32 is printed).

Run from the repository root (``PYTHONPATH=.`` picks up the working tree):

    PYTHONPATH=. python benchmarks/biomarker_throughput.py      # full size: 64/15/224/4
    PYTHONPATH=. python benchmarks/biomarker_throughput.py --width 16 --frames 8 --size 112

The same command runs on CPU and on a CUDA GPU (``--device auto``). Figures only; no asserts.
"""

from __future__ import annotations

import argparse
import asyncio
import io
import os
import platform
import statistics
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import av
import grpc
import numpy as np
import torch

from biomarker_service.artifact import ArtifactInfo, Provenance, load_artifact, save_artifact
from biomarker_service.backend import Backend
from biomarker_service.batcher import DynamicBatcher
from biomarker_service.model import tsm_resnet18
from biomarker_service.model_thread import ModelThread
from biomarker_service.onnx_backend import OnnxBackend, OnnxOptions
from biomarker_service.onnx_export import export_onnx
from biomarker_service.server import create_server
from biomarker_service.settings import BiomarkerSettings
from biomarker_service.torch_backend import TorchBackend, pick_device
from lus.biomarker.v1 import biomarker_service_pb2 as pb
from lus.biomarker.v1 import biomarker_service_pb2_grpc as pb_grpc
from lus.clients.biomarker import channel_options
from lus.schema import load_schema
from lus.video import InputSpec, decode_video, make_clips


@dataclass
class Result:
    backend: str
    mode: str
    concurrency: int
    videos: int
    seconds: float
    latencies: list[float]

    @property
    def rate(self) -> float:
        return self.videos / self.seconds

    def line(self) -> str:
        lat = sorted(self.latencies)
        p50 = statistics.median(lat) * 1000
        p99 = lat[min(len(lat) - 1, round(0.99 * (len(lat) - 1)))] * 1000
        return (
            f"{self.backend:<18} {self.mode:<11} c={self.concurrency:<3} "
            f"{self.rate:9.2f} videos/s   p50 {p50:9.1f} ms   p99 {p99:9.1f} ms   "
            f"({self.videos} videos)"
        )


def encode_mp4(seed: int, frames: int, size: int) -> bytes:
    rng = np.random.default_rng(seed)
    base = rng.integers(0, 255, (size, size), dtype=np.uint8)
    buffer = io.BytesIO()
    with av.open(buffer, mode="w", format="mp4") as out:
        stream = out.add_stream("mpeg4", rate=25)
        stream.width = stream.height = size
        stream.pix_fmt = "yuv420p"
        for t in range(frames):
            gray = np.roll(base, 2 * t, axis=0)
            rgb = np.repeat(gray[..., None], 3, axis=2)
            out.mux(stream.encode(av.VideoFrame.from_ndarray(rgb, format="rgb24")))
        out.mux(stream.encode())
    return buffer.getvalue()


def requests_for(concurrency: int, args: argparse.Namespace) -> int:
    return max(int(args.requests), 2 * concurrency)


async def _model_only(
    backend: Backend, clips: list[np.ndarray], c: int, n: int, args: Any
) -> Result:
    runner = ModelThread(backend)
    batcher = DynamicBatcher(
        runner.run,
        max_batch_size=args.max_batch_size,
        max_wait_ms=args.max_wait_ms,
        max_queue=max(256, 2 * c),
    )
    for item in clips[:2]:  # warm-up (CUDA kernels, ORT arenas)
        await batcher.submit(item)
    latencies: list[float] = []
    counter = iter(range(n))

    async def caller() -> None:
        for i in counter:
            start = time.perf_counter()
            await batcher.submit(clips[i % len(clips)])
            latencies.append(time.perf_counter() - start)

    started = time.perf_counter()
    await asyncio.gather(*(caller() for _ in range(c)))
    seconds = time.perf_counter() - started
    await batcher.close()
    runner._executor.shutdown(wait=True)  # keep the backend for the next run
    return Result(backend.name, "model-only", c, n, seconds, latencies)


def end_to_end(
    backend: Backend, artifact: Path, videos: list[bytes], *, c: int, n: int, args: Any
) -> Result:
    settings = BiomarkerSettings(
        artifact=artifact,
        port=0,
        feature_store="none",
        max_batch_size=args.max_batch_size,
        max_wait_ms=args.max_wait_ms,
        max_queue=max(256, 2 * c),
        decode_workers=args.decode_workers,
    )
    loop = asyncio.new_event_loop()
    thread = threading.Thread(target=loop.run_forever, daemon=True)
    thread.start()
    running = asyncio.run_coroutine_threadsafe(create_server(settings, backend=backend), loop)
    server = running.result(300)
    channel = grpc.insecure_channel(f"127.0.0.1:{server.port}", options=channel_options())
    stub = pb_grpc.BiomarkerServiceStub(channel)
    for video in videos[:2]:
        stub.Extract(pb.ExtractRequest(video=video), timeout=600)
    latencies: list[float] = []

    def call(i: int) -> None:
        start = time.perf_counter()
        stub.Extract(pb.ExtractRequest(video=videos[i % len(videos)]), timeout=600)
        latencies.append(time.perf_counter() - start)

    started = time.perf_counter()
    with ThreadPoolExecutor(c) as pool:
        list(pool.map(call, range(n)))
    seconds = time.perf_counter() - started
    channel.close()
    # Stop without closing the backend (it is reused): drain the server and its pools only.
    server.stopping = True
    asyncio.run_coroutine_threadsafe(server.server.stop(5), loop).result(60)
    asyncio.run_coroutine_threadsafe(server.batcher.close(), loop).result(60)
    server.extractor.runner._executor.shutdown(wait=True)
    server.decode_pool.shutdown(wait=True)
    loop.call_soon_threadsafe(loop.stop)
    thread.join(60)
    loop.close()
    return Result(backend.name, "end-to-end", c, n, seconds, latencies)


def build_backends(artifact: Path, workdir: Path, args: Any) -> list[Backend]:
    device = pick_device(args.device)
    model, info = load_artifact(artifact)
    wanted = args.backends.split(",")
    backends: list[Backend] = []
    if "torch" in wanted:
        backends.append(TorchBackend(model, device))
    onnx_device = "cuda" if device.type == "cuda" else "cpu"
    import onnxruntime as ort

    if onnx_device == "cuda" and "CUDAExecutionProvider" not in ort.get_available_providers():
        print("onnx: no CUDA provider in this onnxruntime; skipping ONNX backends on GPU")
        return backends
    options = OnnxOptions(device=onnx_device, intra_op_threads=args.onnx_threads)
    if "onnx" in wanted:
        backends.append(
            OnnxBackend(export_onnx(artifact, workdir / "fp32.onnx").read_bytes(), options)
        )
    if "onnx-int8" in wanted and onnx_device == "cpu":
        calibration = np.random.default_rng(1).integers(
            0, 256, (8, info.spec.frames_per_clip, info.spec.size, info.spec.size), dtype=np.uint8
        )
        path = export_onnx(
            artifact, workdir / "int8.onnx", quantization="static", calibration=calibration
        )
        backends.append(OnnxBackend(path.read_bytes(), options))
    return backends


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--width", type=int, default=64, help="first-stage channels (64 = ResNet-18)"
    )
    parser.add_argument("--frames", type=int, default=15, help="frames per clip")
    parser.add_argument("--size", type=int, default=224, help="frame size")
    parser.add_argument("--clips", type=int, default=4, help="clips per video")
    parser.add_argument("--concurrency", default="1,8,64")
    parser.add_argument("--requests", type=int, default=16, help="videos per run (at least 2x c)")
    parser.add_argument("--backends", default="torch,onnx,onnx-int8")
    parser.add_argument("--modes", default="model-only,end-to-end")
    parser.add_argument("--device", default="auto")
    parser.add_argument(
        "--max-batch-size",
        type=int,
        default=0,
        help="clips per batch; 0 = auto: 256 on CUDA, one video on CPU",
    )
    parser.add_argument("--max-wait-ms", type=float, default=5.0)
    parser.add_argument("--decode-workers", type=int, default=os.cpu_count() or 2)
    parser.add_argument("--onnx-threads", type=int, default=0)
    parser.add_argument("--video-frames", type=int, default=64, help="frames of each test MP4")
    parser.add_argument("--video-size", type=int, default=256, help="pixels of each test MP4")
    args = parser.parse_args()

    torch.backends.cudnn.benchmark = True
    spec = InputSpec(frames_per_clip=args.frames, size=args.size, clips=args.clips)
    device = pick_device(args.device)
    if args.max_batch_size <= 0:
        args.max_batch_size = 256 if device.type == "cuda" else args.clips
    print(
        f"machine: {platform.node()} {platform.processor() or platform.machine()}, "
        f"{os.cpu_count()} CPUs, torch {torch.__version__} threads {torch.get_num_threads()}, "
        f"device {device}" + (f" ({torch.cuda.get_device_name()})" if device.type == "cuda" else "")
    )
    print(
        f"model: TSM ResNet-18 width {args.width}, {args.clips} clips x {args.frames} frames x "
        f"{args.size}px; max batch {args.max_batch_size} clips, max wait {args.max_wait_ms} ms"
    )
    with tempfile.TemporaryDirectory() as tmp:
        workdir = Path(tmp)
        torch.manual_seed(0)
        model = tsm_resnet18(schema=load_schema(), spec=spec, width=args.width).eval()
        info = ArtifactInfo(
            "bench",
            load_schema(),
            spec,
            args.width,
            Provenance(training_data="random weights", notice="benchmark"),
        )
        artifact = workdir / "bench.safetensors"
        save_artifact(artifact, model, info)
        videos = [encode_mp4(s, args.video_frames, args.video_size) for s in range(8)]
        clips = [make_clips(decode_video(v), spec) for v in videos]
        backends = build_backends(artifact, workdir, args)
        reference = backends[0].predict(clips[0]) if backends else None
        results: list[Result] = []
        for backend in backends:
            if reference is not None and backend is not backends[0]:
                error = float(np.abs(backend.predict(clips[0]) - reference).max())
                print(f"{backend.name}: max |p - p_{backends[0].name}| = {error:.2e}")
            for c in (int(x) for x in args.concurrency.split(",")):
                n = requests_for(c, args)
                if "model-only" in args.modes:
                    result = asyncio.run(_model_only(backend, clips, c, n, args))
                    results.append(result)
                    print(result.line(), flush=True)
                if "end-to-end" in args.modes:
                    result = end_to_end(backend, artifact, videos, c=c, n=n, args=args)
                    results.append(result)
                    print(result.line(), flush=True)
        summarise(results)


def summarise(results: list[Result]) -> None:
    def best(backend: str, mode: str) -> float:
        rates = [r.rate for r in results if r.backend == backend and r.mode == mode]
        return max(rates, default=0.0)

    base = best("torch-cpu-fp32", "model-only")
    cpu = {r.backend for r in results if "-cpu-" in r.backend}
    if base and cpu:
        top = max(cpu, key=lambda b: best(b, "model-only"))
        print(
            f"CPU speed-up (model-only, best over concurrency): {top} "
            f"{best(top, 'model-only'):.2f} videos/s vs torch-cpu-fp32 {base:.2f} = "
            f"{best(top, 'model-only') / base:.2f}x"
        )
    for backend in sorted({r.backend for r in results}):
        model_only, e2e = best(backend, "model-only"), best(backend, "end-to-end")
        if model_only and e2e:
            print(f"{backend}: end-to-end / model-only = {e2e / model_only:.0%}")


if __name__ == "__main__":
    main()
