"""Expert tier benchmark: Predict latency over gRPC on loopback, PredictBatch throughput, RSS.

Fits an MLP-large expert (hidden layers 128, 64, 32) on synthetic 38-d biomarker vectors,
registers it (plus 99 more tasks for the memory figure) in a local registry, starts
``python -m expert_service`` as its own process and drives it from this one with grpc.aio.
Optionally serves the same scikit-learn model with Seldon MLServer for a peer comparison.

    python benchmarks/expert_latency.py [--seconds 3] [--mlserver-venv /tmp/mlserver-venv]

Figures depend on the machine and its load; run it on a quiet machine.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import re
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Awaitable, Callable
from pathlib import Path

import grpc
import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from expert_service.artifact import TrainingSummary  # noqa: E402
from expert_service.explain import ood_scores  # noqa: E402
from expert_service.registry import LocalRegistry  # noqa: E402
from lus.biomarker.v1 import schema_pb2  # noqa: E402
from lus.expert.v1 import expert_service_pb2 as pb  # noqa: E402
from lus.expert.v1 import expert_service_pb2_grpc as pb_grpc  # noqa: E402
from lus.schema import load_schema  # noqa: E402

SCHEMA = load_schema()
N = len(SCHEMA)
N_TASKS = 100


def fit_mlp_large(seed: int = 0) -> tuple[object, np.ndarray, np.ndarray]:
    from sklearn.neural_network import MLPClassifier

    rng = np.random.default_rng(seed)
    x = rng.random((2000, N)).astype(np.float32)
    score = x[:, 0] + x[:, 4] - x[:, 9] + 0.5 * x[:, 20]
    y = np.digitize(score, np.quantile(score, [0.25, 0.5, 0.75])).astype(str)
    model = MLPClassifier(hidden_layer_sizes=(128, 64, 32), max_iter=60, random_state=seed)
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        model.fit(x, y)
    return model, x, y


def to_onnx_bytes(model: object, x: np.ndarray) -> bytes:
    from skl2onnx import to_onnx

    return bytes(to_onnx(model, x[:1], options={"zipmap": False}).SerializeToString())


def summary_of(x: np.ndarray, y: np.ndarray) -> TrainingSummary:
    mean, std = x.mean(axis=0), x.std(axis=0)
    threshold = float(np.quantile(ood_scores(x, mean, std), 0.99))
    counts = {str(c): int((y == c).sum()) for c in np.unique(y)}
    return TrainingSummary(counts, 500, tuple(map(float, mean)), tuple(map(float, std)), threshold)


def build_registry(
    root: Path, onnx: bytes, classes: tuple[str, ...], summary: TrainingSummary
) -> None:
    registry = LocalRegistry(root)
    for i in range(N_TASKS):
        registry.register(
            "mlp-large" if i == 0 else f"task-{i:03d}",
            onnx,
            schema_id=SCHEMA.schema_id,
            classes=classes,
            n_features=N,
            model_family="mlp",
            training_summary=summary,
        )


def start_server(root: Path) -> tuple[subprocess.Popen[str], int]:
    env = {**os.environ, "LUS_EXPERT_PORT": "0", "LUS_EXPERT_REGISTRY_DIR": str(root),
           "LUS_EXPERT_MAX_LOADED": str(N_TASKS + 28)}  # fmt: skip
    proc = subprocess.Popen(
        [sys.executable, "-m", "expert_service"],
        cwd=REPO,
        env=env,
        stderr=subprocess.PIPE,
        text=True,
    )
    assert proc.stderr is not None
    for line in proc.stderr:
        if match := re.search(r"listening on 127\.0\.0\.1:(\d+)", line):
            threading.Thread(target=proc.stderr.read, daemon=True).start()
            return proc, int(match.group(1))
    raise RuntimeError("expert server did not start")


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


async def drive(
    call: Callable[[], Awaitable[object]], concurrency: int, seconds: float
) -> tuple[np.ndarray, float]:
    """Run ``call`` from ``concurrency`` coroutines for ``seconds``; latencies (ms) and wall s."""
    latencies: list[float] = []
    stop = time.perf_counter() + seconds

    async def worker() -> None:
        while time.perf_counter() < stop:
            start = time.perf_counter()
            await call()
            latencies.append((time.perf_counter() - start) * 1000)

    for _ in range(50):  # warm-up
        await call()
    began = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(concurrency)))
    return np.asarray(latencies), time.perf_counter() - began


def report(name: str, latencies: np.ndarray, wall: float, per_call: int = 1) -> dict[str, float]:
    p50, p99 = np.percentile(latencies, [50, 99])
    rate = len(latencies) / wall
    print(f"{name:<48} p50 {p50:6.3f} ms  p99 {p99:6.3f} ms  {rate:9.0f} calls/s"
          + (f"  {rate * per_call:9.0f} predictions/s" if per_call > 1 else ""))  # fmt: skip
    return {"p50": float(p50), "p99": float(p99), "rate": rate * per_call}


async def bench_ours(port: int, x: np.ndarray, seconds: float) -> dict[str, dict[str, float]]:
    results = {}
    vector = schema_pb2.BiomarkerVector(schema_id=SCHEMA.schema_id, values=x[0].tolist())
    explained = pb.PredictRequest(task="mlp-large", vector=vector)
    plain = pb.PredictRequest(task="mlp-large", vector=vector, max_contributions=0)
    batch = pb.PredictBatchRequest(
        requests=[
            pb.PredictRequest(
                task="mlp-large",
                vector=schema_pb2.BiomarkerVector(schema_id=SCHEMA.schema_id, values=row.tolist()),
                max_contributions=0,
            )
            for row in x[:64]
        ]
    )
    batch_explained = pb.PredictBatchRequest(requests=[
        pb.PredictRequest(task=r.task, vector=r.vector) for r in batch.requests
    ])  # fmt: skip
    async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as channel:
        stub = pb_grpc.ExpertServiceStub(channel)
        for c in (1, 16, 64):
            lat, wall = await drive(lambda: stub.Predict(explained), c, seconds)
            results[f"predict_c{c}"] = report(
                f"Predict (top-5 contributions + OOD) c={c}", lat, wall
            )
        for c in (1, 16):
            lat, wall = await drive(lambda: stub.Predict(plain), c, seconds)
            results[f"predict_plain_c{c}"] = report(f"Predict (no contributions) c={c}", lat, wall)
        for c in (1, 4):
            lat, wall = await drive(lambda: stub.PredictBatch(batch), c, seconds)
            results[f"batch_c{c}"] = report(
                f"PredictBatch x64 (no contributions) c={c}", lat, wall, 64
            )
        lat, wall = await drive(lambda: stub.PredictBatch(batch_explained), 4, seconds)
        results["batch_explained"] = report(
            "PredictBatch x64 (top-5 contributions) c=4", lat, wall, 64
        )
        for i in range(1, N_TASKS):  # touch every task so all 100 are loaded
            await stub.Predict(pb.PredictRequest(task=f"task-{i:03d}", vector=vector))
    return results


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--seconds", type=float, default=3.0, help="duration of each measurement")
    parser.add_argument(
        "--mlserver-venv",
        type=Path,
        default=Path("/tmp/mlserver-venv"),
        help="venv with mlserver + mlserver-sklearn; the peer is skipped when missing",
    )
    args = parser.parse_args()

    when = time.strftime("%Y-%m-%d %H:%M")
    print(f"machine: {os.cpu_count()} CPUs; python {sys.version.split()[0]}; {when}")
    model, x, y = fit_mlp_large()
    onnx = to_onnx_bytes(model, x)
    classes = tuple(str(c) for c in model.classes_)  # type: ignore[attr-defined]
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp) / "registry"
        build_registry(root, onnx, classes, summary_of(x, y))
        proc, port = start_server(root)
        try:
            print(
                f"expert server pid {proc.pid}, port {port}; RSS at start {rss_mb(proc.pid):.0f} MB"
            )
            ours = asyncio.run(bench_ours(port, x, args.seconds))
            print(f"RSS with {N_TASKS} tasks loaded: {rss_mb(proc.pid):.0f} MB")
        finally:
            proc.send_signal(signal.SIGTERM)
            proc.wait(timeout=30)
        peer_script = REPO / "benchmarks" / "expert_mlserver_peer.py"
        python = args.mlserver_venv / "bin" / "python"
        if python.exists():
            import joblib  # the peer's own format; only MLServer loads it, in its own venv

            joblib.dump(model, Path(tmp) / "model.joblib")
            np.save(Path(tmp) / "x.npy", x[:64])
            run = subprocess.run(
                [str(python), str(peer_script), tmp, str(args.seconds)],
                capture_output=True,
                text=True,
                check=False,
            )
            print(run.stdout, end="")
            if run.returncode != 0:
                print(f"MLServer peer failed: {run.stderr[-2000:]}")
            else:
                peer = dict(re.findall(r"^PEER (\S+) ([\d.]+)$", run.stdout, re.M))
                for key in ("predict_c1", "predict_c16", "batch_c4"):
                    if f"{key}_rate" in peer:
                        ratio = ours[key]["rate"] / float(peer[f"{key}_rate"])
                        faster = float(peer[f"{key}_p50"]) / ours[key]["p50"]
                        print(
                            f"ours/MLServer {key}: throughput x{ratio:.2f}, p50 x{faster:.2f} lower"
                        )
        else:
            print(f"MLServer peer skipped: no {python}")


if __name__ == "__main__":
    main()
