"""Peer benchmark: the biomarker model served by TorchServe and by our service, end-to-end.

Every server gets the same MP4 bytes at the same concurrencies, in one run, servers interleaved:

* TorchServe (peer venv): a ``.mar`` of the same artifact with ``torchserve/tsm_video_handler.py``,
  which decodes and samples clips with ``lus.video`` and runs the model in torch eager fp32 on
  CPU; TorchServe batching at ``--batch-videos`` videos and ``--max-wait-ms`` (our batcher's
  CPU settings); driven over its HTTP inference API (``torchserve/launch.py``).
  ``torchserve-WxT`` in ``--servers`` is one instance of W worker processes with T torch
  threads each (default: 1x2 and 2x1);
* our service (project venv, ``python -m biomarker_service``) with the torch backend and with
  static int8 ONNX (our fastest CPU backend), same batching, driven over gRPC ``Extract``.

It prints videos/s and p50/p99 per server and concurrency, the ratios ours / fastest TorchServe
layout, and the largest difference between each server's vectors and our torch backend's
(exit status 1 when TorchServe's exceed ``--tolerance``). The model is the one
``biomarker_throughput.py`` builds: seed 0, untrained, TSM ResNet-18 over 4 clips x 15 frames x
224 px; the inputs are its MP4s of 64 frames x 256 px.

TorchServe (archived upstream in 2025) is a comparison peer only and lives in its own venv
(PyYAML: TorchServe 0.12.0 imports it without declaring it; scipy: ``lus.video`` imports it):

    python3.11 -m venv /tmp/torchserve-venv
    /tmp/torchserve-venv/bin/pip install torch==2.13.0 torchserve==0.12.0 \\
        torch-model-archiver==0.12.0 pyyaml==6.0.4 scipy==1.17.1 onnx==1.23.2 \\
        grpcio==1.85.3 grpcio-health-checking==1.85.1 grpcio-reflection==1.85.1 \\
        protobuf==7.36.2 numpy==2.4.6 onnxruntime==1.32.0 pydantic==2.14.4 \\
        pydantic-settings==2.16.3 prometheus-client==0.26.0 tqdm==4.70.1 safetensors==0.8.0 \\
        av==18.1.0 pydicom==3.0.2

It needs Java 17 on PATH (or JAVA_HOME). Run from the repository root with either venv as the
driver (both hold torch and our package's imports); the servers always run as subprocesses,
ours from ``--project-python`` (default ``.venv/bin/python``), TorchServe from ``--peer-venv``:

    PYTHONPATH=. nice -n 5 .venv/bin/python benchmarks/biomarker_torchserve_peer.py \\
        --concurrency 1,8 --requests 8

Figures only, on whatever CPU runs it; the one check is that the vectors agree.
"""

from __future__ import annotations

import argparse
import os
import platform
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import ExitStack, contextmanager
from pathlib import Path

import grpc
import numpy as np
import torch
from grpc_health.v1 import health_pb2, health_pb2_grpc

from benchmarks.biomarker_throughput import Result, encode_mp4, requests_for
from benchmarks.torchserve.launch import Predict, free_port, peer_versions, tail, torchserve
from biomarker_service.artifact import ArtifactInfo, Provenance, save_artifact
from biomarker_service.model import tsm_resnet18
from biomarker_service.onnx_export import export_onnx
from lus.biomarker.v1 import biomarker_service_pb2 as pb
from lus.biomarker.v1 import biomarker_service_pb2_grpc as pb_grpc
from lus.clients.biomarker import SERVICE, channel_options
from lus.schema import load_schema
from lus.video import InputSpec

ROOT = Path(__file__).resolve().parents[1]


def build_artifact(workdir: Path, spec: InputSpec) -> Path:
    """The model ``biomarker_throughput.py`` benchmarks: seed 0, untrained, width 64."""
    torch.manual_seed(0)
    model = tsm_resnet18(schema=load_schema(), spec=spec, width=64).eval()
    provenance = Provenance(training_data="random weights", notice="benchmark")
    info = ArtifactInfo("bench", load_schema(), spec, 64, provenance)
    artifact = workdir / "bench.safetensors"
    save_artifact(artifact, model, info)
    return artifact


def export_int8(artifact: Path, workdir: Path, spec: InputSpec) -> Path:
    """Static QDQ int8, calibrated as ``biomarker_throughput.py`` does."""
    shape = (8, spec.frames_per_clip, spec.size, spec.size)
    calibration = np.random.default_rng(1).integers(0, 256, shape, dtype=np.uint8)
    return export_onnx(
        artifact, workdir / "int8.onnx", quantization="static", calibration=calibration
    )


# -- our service ------------------------------------------------------------------------------


@contextmanager
def our_server(
    args: argparse.Namespace, artifact: Path, backend: str, onnx_model: Path | None
) -> Iterator[Predict]:
    """``python -m biomarker_service`` from the project venv; yields a blocking Extract call."""
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("LUS_")}
    env |= {
        "PYTHONPATH": str(ROOT),
        "LUS_BIOMARKER_ARTIFACT": str(artifact),
        "LUS_BIOMARKER_PORT": str(port),
        "LUS_BIOMARKER_DEVICE": "cpu",
        "LUS_BIOMARKER_BACKEND": backend,
        "LUS_BIOMARKER_FEATURE_STORE": "none",  # every request costs model time
        "LUS_BIOMARKER_MAX_BATCH_SIZE": str(args.batch_videos * args.clips),
        "LUS_BIOMARKER_MAX_WAIT_MS": str(args.max_wait_ms),
        "LUS_BIOMARKER_DECODE_WORKERS": str(args.decode_workers),
        "LUS_BIOMARKER_LOG_LEVEL": "WARNING",
    }
    if onnx_model is not None:
        env["LUS_BIOMARKER_ONNX_MODEL"] = str(onnx_model)
        # A speed comparison of an untrained model: its int8 parity is not what is measured.
        env["LUS_BIOMARKER_INT8_ALLOW_UNCHECKED"] = "true"
    log_path = artifact.parent / f"ours-{backend}.log"
    with log_path.open("w") as log:
        proc = subprocess.Popen(
            [str(args.project_python), "-m", "biomarker_service"],
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
            cwd=artifact.parent,
        )
    channel = grpc.insecure_channel(f"127.0.0.1:{port}", options=channel_options())
    try:
        wait_serving(channel, proc, log_path)
        stub = pb_grpc.BiomarkerServiceStub(channel)

        def predict(video: bytes) -> np.ndarray:
            reply = stub.Extract(pb.ExtractRequest(video=video), timeout=600)
            return np.asarray(reply.vector.values, dtype=np.float32)

        yield predict
    finally:
        channel.close()
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(60)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def wait_serving(channel: grpc.Channel, proc: subprocess.Popen[bytes], log_path: Path) -> None:
    health = health_pb2_grpc.HealthStub(channel)
    deadline = time.monotonic() + 600
    while True:
        try:
            reply = health.Check(health_pb2.HealthCheckRequest(service=SERVICE), timeout=2)
            if reply.status == health_pb2.HealthCheckResponse.SERVING:
                return
        except grpc.RpcError:
            pass
        if proc.poll() is not None or time.monotonic() > deadline:
            raise SystemExit(f"our server did not start:\n{tail(log_path)}")
        time.sleep(0.5)


# -- load and report --------------------------------------------------------------------------


def measure(
    predictors: dict[str, Predict], videos: list[bytes], args: argparse.Namespace
) -> tuple[list[Result], dict[str, dict[int, np.ndarray]]]:
    """Per concurrency, each server in turn: ``requests_for(c)`` videos from ``c`` threads.

    Interleaving the servers (rather than one server's whole run, then the next) spreads slow
    phases of a shared machine over all of them.
    """
    for predict in predictors.values():  # warm-up: JIT, allocator, thread pools
        for video in videos[:2]:
            predict(video)
    vectors: dict[str, dict[int, np.ndarray]] = {name: {} for name in predictors}
    results = []
    for c in (int(x) for x in args.concurrency.split(",")):
        n = requests_for(c, args)
        for name, predict in predictors.items():
            results.append(load(name, predict, videos, c=c, n=n, vectors=vectors[name]))
            print(results[-1].line(), flush=True)
    return results, vectors


def load(
    name: str,
    predict: Predict,
    videos: list[bytes],
    *,
    c: int,
    n: int,
    vectors: dict[int, np.ndarray],
) -> Result:
    """``n`` videos from ``c`` threads, each waiting for its answer before sending the next."""
    latencies: list[float] = []

    def call(i: int) -> None:
        start = time.perf_counter()
        vector = predict(videos[i % len(videos)])
        latencies.append(time.perf_counter() - start)
        vectors.setdefault(i % len(videos), vector)

    started = time.perf_counter()
    with ThreadPoolExecutor(c) as pool:
        list(pool.map(call, range(n)))
    return Result(name, "end-to-end", c, n, time.perf_counter() - started, latencies)


def p50_p99(result: Result) -> tuple[float, float]:
    lat = sorted(result.latencies)
    return statistics.median(lat), lat[min(len(lat) - 1, round(0.99 * (len(lat) - 1)))]


def print_ratios(results: list[Result]) -> None:
    """Each of ours against the fastest TorchServe layout at the same concurrency."""
    print("ours / fastest TorchServe (videos/s: above 1 favours ours; latency: below 1 does):")
    base: dict[int, Result] = {}
    for r in results:
        if r.backend.startswith("torchserve") and r.rate > getattr(
            base.get(r.concurrency), "rate", 0
        ):
            base[r.concurrency] = r
    for r in results:
        peer = base.get(r.concurrency)
        if r.backend.startswith("torchserve") or peer is None:
            continue
        (p50, p99), (b50, b99) = p50_p99(r), p50_p99(peer)
        print(
            f"  {r.backend:<16} c={r.concurrency:<3} vs {peer.backend}: videos/s "
            f"x{r.rate / peer.rate:.2f}   p50 x{p50 / b50:.2f}   p99 x{p99 / b99:.2f}"
        )


def max_difference(a: dict[int, np.ndarray], b: dict[int, np.ndarray]) -> tuple[float, int]:
    shared = sorted(a.keys() & b.keys())
    error = max((float(np.abs(a[i] - b[i]).max()) for i in shared), default=float("nan"))
    return error, len(shared)


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--concurrency", default="1,8")
    parser.add_argument("--requests", type=int, default=8, help="videos per run (at least 2x c)")
    parser.add_argument(
        "--servers",
        default="torchserve-1x2,torchserve-2x1,torch,onnx-int8",
        help="torchserve-WxT (W worker processes x T torch threads), torch, onnx-int8",
    )
    parser.add_argument("--clips", type=int, default=4, help="clips per video")
    parser.add_argument("--frames", type=int, default=15, help="frames per clip")
    parser.add_argument("--size", type=int, default=224, help="frame size")
    parser.add_argument(
        "--batch-videos", type=int, default=1, help="videos per forward pass (both servers)"
    )
    parser.add_argument("--max-wait-ms", type=float, default=5.0, help="batch delay (both)")
    parser.add_argument("--decode-workers", type=int, default=os.cpu_count() or 2)
    parser.add_argument("--tolerance", type=float, default=1e-4)
    parser.add_argument("--project-python", type=Path, default=ROOT / ".venv" / "bin" / "python")
    parser.add_argument("--peer-venv", type=Path, default=Path("/tmp/torchserve-venv"))
    return parser.parse_args()


def main() -> None:
    args = parse_args()
    # SIGTERM (e.g. from ``timeout``) unwinds like Ctrl-C, so every server is stopped.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    servers = args.servers.split(",")
    spec = InputSpec(frames_per_clip=args.frames, size=args.size, clips=args.clips)
    print(
        f"machine: {platform.node()} {platform.processor() or platform.machine()}, "
        f"{os.cpu_count()} CPUs; driver {sys.executable}"
    )
    if any(server.startswith("torchserve") for server in servers):
        print(peer_versions(args.peer_venv))
    print(
        f"model: TSM ResNet-18, {args.clips} clips x {args.frames} frames x {args.size}px; "
        f"batch {args.batch_videos} video(s), max wait {args.max_wait_ms} ms; "
        f"torchserve-WxT: W workers x T torch threads; ours {args.decode_workers} decode "
        f"threads + 1 model thread of {torch.get_num_threads()} torch threads",
        flush=True,
    )
    with tempfile.TemporaryDirectory(prefix="ts-peer-") as tmp, ExitStack() as stack:
        workdir = Path(tmp)
        artifact = build_artifact(workdir, spec)
        videos = [encode_mp4(seed, 64, 256) for seed in range(8)]
        predictors: dict[str, Predict] = {}
        for server in servers:  # all up at once; idle ones cost next to nothing
            if server.startswith("torchserve"):
                context = torchserve(
                    args.peer_venv,
                    artifact,
                    server=server,
                    batch=args.batch_videos,
                    max_wait_ms=args.max_wait_ms,
                    pythonpath=ROOT,
                    probe=encode_mp4(99, 16, 64),
                )
                predictors[server] = stack.enter_context(context)
            elif server == "torch":
                context = our_server(args, artifact, "torch", None)
                predictors["ours-torch"] = stack.enter_context(context)
            elif server == "onnx-int8":
                context = our_server(args, artifact, "onnx", export_int8(artifact, workdir, spec))
                predictors["ours-onnx-int8"] = stack.enter_context(context)
            else:
                raise SystemExit(f"unknown server {server!r}: torchserve-WxT, torch or onnx-int8")
        results, vectors = measure(predictors, videos, args)
    print_ratios(results)
    mismatch = False
    for name in vectors:
        if name != "ours-torch" and "ours-torch" in vectors:
            error, count = max_difference(vectors[name], vectors["ours-torch"])
            print(f"max |v_{name} - v_ours-torch| = {error:.2e} over {count} videos")
            mismatch |= name.startswith("torchserve") and not error <= args.tolerance
    if mismatch:
        raise SystemExit(f"TorchServe's vectors differ from ours by more than {args.tolerance}")


if __name__ == "__main__":
    main()
