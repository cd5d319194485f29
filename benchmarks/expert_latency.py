"""Expert tier benchmark: Predict latency over gRPC on loopback, PredictBatch throughput, RSS.

Fits an MLP-large expert (hidden layers 128, 64, 32) on synthetic 38-d biomarker vectors,
registers it (plus 99 more tasks for the memory figure) in a local registry, starts
``python -m expert_service`` as its own process and drives it from this one with grpc.aio.
Concurrency 1 is measured with both an asyncio stub and a blocking one. Batches are measured
in the column-oriented form (one ``VectorMatrix`` of 64 vectors) and as
64 ``PredictRequest`` messages. Every line also gives the server's CPU time per call, which
other load on the machine disturbs far less than latency. Prints each issue-4 target next to
its figure, and serves the same scikit-learn model with Seldon MLServer for a peer comparison
when its venv exists.

    python benchmarks/expert_latency.py [--seconds 3] [--mlserver-venv /tmp/mlserver-venv]

Figures depend on the machine and its load; run it on a quiet machine.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import re
import shutil
import signal
import struct
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

from expert_service.card import ExpertDraft, Lineage, TrainingSummary  # noqa: E402
from expert_service.explain import ood_scores  # noqa: E402
from expert_service.registry import LocalRegistry  # noqa: E402
from lus.biomarker.v1 import schema_pb2  # noqa: E402
from lus.expert.v1 import expert_service_pb2 as pb  # noqa: E402
from lus.expert.v1 import expert_service_pb2_grpc as pb_grpc  # noqa: E402
from lus.schema import load_schema  # noqa: E402

SCHEMA = load_schema()
N = len(SCHEMA)
BIOMARKER_MODEL = "bench-biomarker"
"""The biomarker model the benchmark's experts were "fit on"; every vector names it (the
lineage check is one set lookup on the hot path, measured here with the rest)."""
MODEL_REF = schema_pb2.ModelRef(version=BIOMARKER_MODEL)
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
        draft = ExpertDraft(
            "mlp-large" if i == 0 else f"task-{i:03d}",
            onnx,
            schema_id=SCHEMA.schema_id,
            classes=classes,
            n_features=N,
            model_family="mlp",
            training_summary=summary,
            lineage=Lineage(biomarker_models=(BIOMARKER_MODEL,)),
        )
        registry.register(draft, owner="")


def start_server(root: Path, processes: int, pin: bool) -> tuple[subprocess.Popen[str], int]:
    env = {**os.environ, "LUS_EXPERT_PORT": "0", "LUS_EXPERT_REGISTRY_DIR": str(root),
           "LUS_EXPERT_MAX_LOADED": str(N_TASKS + 28),
           "LUS_EXPERT_PROCESSES": str(processes),
           "LUS_EXPERT_PIN_CPUS": str(pin).lower()}  # fmt: skip
    proc = subprocess.Popen(
        [sys.executable, "-m", "expert_service"],
        cwd=REPO,
        env=env,
        stderr=subprocess.PIPE,
        text=True,
    )
    assert proc.stderr is not None
    workers_up = 0
    port = 0
    for line in proc.stderr:
        if match := re.search(r"listening on 127\.0\.0\.1:(\d+)", line):
            port = int(match.group(1))
        workers_up += "expert worker pid" in line
        if port and workers_up == processes - 1:
            threading.Thread(target=proc.stderr.read, daemon=True).start()
            return proc, port
    raise RuntimeError("expert server did not start")


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def server_pids(pid: int) -> list[int]:
    """The server's main process and its worker processes (``LUS_EXPERT_PROCESSES``)."""
    pids = [pid]
    for task in Path(f"/proc/{pid}/task").iterdir():
        for child in (task / "children").read_text().split():
            if b"multiprocessing.spawn" in Path(f"/proc/{child}/cmdline").read_bytes():
                pids.append(int(child))
    return pids


def cpu_s(pid: int) -> float:
    """User + system CPU seconds of the server's processes (robust to other load, unlike wall
    time)."""
    total = 0.0
    for one in server_pids(pid):
        fields = Path(f"/proc/{one}/stat").read_text().rsplit(")", 1)[1].split()
        total += (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    return total


def rss_total_mb(pid: int) -> float:
    return sum(rss_mb(one) for one in server_pids(pid))


Call = Callable[[int], Awaitable[object]]
"""An RPC made by coroutine number ``i`` (which picks its connection from it)."""


async def drive(call: Call, concurrency: int, seconds: float) -> tuple[np.ndarray, float]:
    """Run ``call`` from ``concurrency`` coroutines for ``seconds``; latencies (ms) and wall s."""
    latencies: list[float] = []
    stop = time.perf_counter() + seconds

    async def worker(i: int) -> None:
        while time.perf_counter() < stop:
            start = time.perf_counter()
            await call(i)
            latencies.append((time.perf_counter() - start) * 1000)

    for i in range(50):  # warm-up
        await call(i)
    began = time.perf_counter()
    await asyncio.gather(*(worker(i) for i in range(concurrency)))
    return np.asarray(latencies), time.perf_counter() - began


async def measure(
    name: str,
    call: Call,
    concurrency: int,
    seconds: float,
    server_pid: int,
    *,
    per_call: int = 1,
) -> dict[str, float]:
    """Drive ``call`` and print p50/p99, calls/s (predictions/s) and server CPU per call."""
    before = cpu_s(server_pid)
    latencies, wall = await drive(call, concurrency, seconds)
    server_us = (cpu_s(server_pid) - before) / len(latencies) * 1e6
    p50, p99 = np.percentile(latencies, [50, 99])
    rate = len(latencies) / wall
    print(f"{name:<52} p50 {p50:6.3f} ms  p99 {p99:6.3f} ms  {rate:7.0f} calls/s"
          + (f"  {rate * per_call:8.0f} pred/s" if per_call > 1 else "")
          + f"  server CPU {server_us:5.0f} us/call")  # fmt: skip
    return {"p50": float(p50), "p99": float(p99), "rate": rate * per_call, "cpu_us": server_us}


def measure_blocking(
    name: str, call: Callable[[], object], seconds: float, server_pid: int
) -> dict[str, float]:
    """``measure`` at concurrency 1 with a blocking stub (what a PACS script would use)."""
    for _ in range(50):  # warm-up
        call()
    latencies: list[float] = []
    before = cpu_s(server_pid)
    began = time.perf_counter()
    stop = began + seconds
    while time.perf_counter() < stop:
        start = time.perf_counter()
        call()
        latencies.append((time.perf_counter() - start) * 1000)
    wall = time.perf_counter() - began
    server_us = (cpu_s(server_pid) - before) / len(latencies) * 1e6
    p50, p99 = np.percentile(latencies, [50, 99])
    rate = len(latencies) / wall
    print(f"{name:<52} p50 {p50:6.3f} ms  p99 {p99:6.3f} ms  {rate:7.0f} calls/s"
          f"  server CPU {server_us:5.0f} us/call")  # fmt: skip
    return {"p50": float(p50), "p99": float(p99), "rate": rate, "cpu_us": server_us}


def predict_requests(x: np.ndarray) -> tuple[pb.PredictRequest, pb.PredictRequest]:
    """The default request (top-5 contributions + OOD flag) and one without contributions."""
    vector = schema_pb2.BiomarkerVector(
        schema_id=SCHEMA.schema_id, values=x[0].tolist(), model=MODEL_REF
    )
    explained = pb.PredictRequest(task="mlp-large", vector=vector)
    return explained, pb.PredictRequest(task="mlp-large", vector=vector, max_contributions=0)


async def bench_ours(
    port: int, x: np.ndarray, seconds: float, pid: int, connections: int
) -> dict[str, dict[str, float]]:
    results = {}
    explained, plain = predict_requests(x)
    rows = x[:64]
    matrix = pb.PredictBatchRequest(
        matrices=[
            pb.VectorMatrix(
                task="mlp-large",
                schema_id=SCHEMA.schema_id,
                n_vectors=len(rows),
                values=rows.ravel().tolist(),
                model=MODEL_REF,
            )
        ]
    )
    matrix_explained = pb.PredictBatchRequest()
    matrix_explained.CopyFrom(matrix)
    matrix_explained.matrices[0].max_contributions = 5
    requests = pb.PredictBatchRequest(
        requests=[
            pb.PredictRequest(
                task="mlp-large",
                vector=schema_pb2.BiomarkerVector(
                    schema_id=SCHEMA.schema_id, values=row.tolist(), model=MODEL_REF
                ),
                max_contributions=0,
            )
            for row in rows
        ]
    )
    # One TCP connection per channel (a local subchannel pool each), as separate clients
    # would have; coroutine i uses connection i mod n, so worker processes all get traffic.
    own_connection = [("grpc.use_local_subchannel_pool", 1)]
    channels = [
        grpc.aio.insecure_channel(f"127.0.0.1:{port}", options=own_connection)
        for _ in range(connections)
    ]
    stubs = [pb_grpc.ExpertServiceStub(channel) for channel in channels]
    stub = stubs[0]
    try:
        for c in (1, 16, 64):
            results[f"predict_c{c}"] = await measure(
                f"Predict (default: top-5 contributions + OOD) c={c}",
                lambda i: stubs[i % connections].Predict(explained), c, seconds, pid,
            )  # fmt: skip
        for c in (1, 16):
            results[f"predict_plain_c{c}"] = await measure(
                f"Predict (max_contributions=0) c={c}",
                lambda i: stubs[i % connections].Predict(plain), c, seconds, pid,
            )  # fmt: skip
        for c in (1, 4):
            results[f"batch_c{c}"] = await measure(
                f"PredictBatch 1 matrix x64 (no contributions) c={c}",
                lambda i: stubs[i % connections].PredictBatch(matrix), c, seconds, pid,
                per_call=64,
            )  # fmt: skip
        results["batch_matrix_explained"] = await measure(
            "PredictBatch 1 matrix x64 (top-5 contributions) c=4",
            lambda i: stubs[i % connections].PredictBatch(matrix_explained), 4, seconds, pid,
            per_call=64,
        )  # fmt: skip
        results["batch_requests"] = await measure(
            "PredictBatch 64 PredictRequests (no contrib.) c=4",
            lambda i: stubs[i % connections].PredictBatch(requests), 4, seconds, pid,
            per_call=64,
        )  # fmt: skip
        with grpc.insecure_channel(f"127.0.0.1:{port}") as blocking_channel:
            blocking = pb_grpc.ExpertServiceStub(blocking_channel)
            results["predict_blocking_c1"] = await asyncio.to_thread(
                measure_blocking,
                "Predict (default) c=1, blocking stub",
                lambda: blocking.Predict(explained), seconds, pid,
            )  # fmt: skip
        for i in range(1, N_TASKS):  # touch every task so all 100 are loaded
            await stub.Predict(pb.PredictRequest(task=f"task-{i:03d}", vector=explained.vector))
    finally:
        for channel in channels:
            await channel.close()
    return results


def h2load_predict(
    port: int,
    request: pb.PredictRequest,
    *,
    concurrency: int,
    connections: int,
    seconds: float,
    server_pid: int,
    name: str,
) -> dict[str, float] | None:
    """Predict driven by h2load (nghttp2's C load generator, like ghz for gRPC): the client
    costs far less CPU than a Python one, so the figure is the server's own capacity."""
    h2load = shutil.which("h2load")
    if h2load is None:
        print(f"{name:<52} skipped: no h2load (Debian package nghttp2-client)")
        return None
    body = request.SerializeToString()
    with tempfile.NamedTemporaryFile(suffix=".grpc") as frame:
        frame.write(b"\x00" + struct.pack(">I", len(body)) + body)  # gRPC length-prefixed
        frame.flush()
        command = [
            h2load, f"--duration={round(seconds * 1000)}ms",  # the server is warm by now
            f"--clients={connections}", f"--max-concurrent-streams={concurrency // connections}",
            "--header=content-type: application/grpc", "--header=te: trailers",
            f"--data={frame.name}",
            f"http://127.0.0.1:{port}/lus.expert.v1.ExpertService/Predict",
        ]  # fmt: skip
        before = cpu_s(server_pid)
        out = subprocess.run(command, capture_output=True, text=True, check=True).stdout
    done = re.search(r"requests: \d+ total, \d+ started, (\d+) done, (\d+) succeeded", out)
    rate = re.search(r"finished in [\d.]+s, ([\d.]+) req/s", out)
    mean = re.search(r"time for request:\s+\S+\s+\S+\s+(\S+)", out)
    if not (done and rate and mean):
        print(f"{name:<52} h2load output not understood:\n{out}")
        return None
    calls = int(done.group(1))
    server_us = (cpu_s(server_pid) - before) / max(calls, 1) * 1e6
    mean_ms = _ms(mean.group(1))
    ok = f"{int(done.group(2))}/{calls} HTTP 200"
    print(f"{name:<52} mean {mean_ms:6.3f} ms  {float(rate.group(1)):7.0f} calls/s"
          f"  server CPU {server_us:5.0f} us/call  ({ok})")  # fmt: skip
    return {"rate": float(rate.group(1)), "mean": mean_ms, "cpu_us": server_us}


def _ms(text: str) -> float:
    """h2load's durations (``812us``, ``1.25ms``, ``2.1s``) in milliseconds."""
    for unit, scale in (("us", 1e-3), ("ms", 1.0), ("s", 1e3)):
        if text.endswith(unit):
            return float(text[: -len(unit)]) * scale
    return float("nan")


def print_targets(ours: dict[str, dict[str, float]], rss: float) -> None:
    fast_client = [
        (f"Predict/s c=16 ({what}, h2load client)", ours[key]["rate"], ">=", 3000, "/s")
        for key, what in (("h2load_c16", "default request"), ("h2load_plain_c16", "no contrib."))
        if key in ours
    ]
    """Each issue-4 target next to the figure measured for it."""
    print("\ntargets (issue 4; 2 cores, client on the same machine, MLP-large):")
    rows = [
        ("Predict p50 c=1 (default request)", ours["predict_c1"]["p50"], "<=", 0.7, "ms"),
        ("Predict p99 c=1 (default request)", ours["predict_c1"]["p99"], "<=", 1.5, "ms"),
        ("Predict p50 c=1 (default, blocking stub)", ours["predict_blocking_c1"]["p50"], "<=",
         0.7, "ms"),
        ("Predict p99 c=1 (default, blocking stub)", ours["predict_blocking_c1"]["p99"], "<=",
         1.5, "ms"),
        ("Predict/s c=16 (default request)", ours["predict_c16"]["rate"], ">=", 3000, "/s"),
        ("Predict/s c=16 (max_contributions=0)", ours["predict_plain_c16"]["rate"], ">=", 3000,
         "/s"),
        *fast_client,
        ("predictions/s, PredictBatch of 64 (matrix, c=4)", ours["batch_c4"]["rate"], ">=",
         100_000, "/s"),
        ("RSS with 100 tasks loaded", rss, "<=", 500, "MB"),
    ]  # fmt: skip
    for name, value, op, target, unit in rows:
        met = value <= target if op == "<=" else value >= target
        print(f"  {name:<50} {value:10.3f} {unit:<3} target {op} {target:g} {unit:<3}"
              f"  {'met' if met else 'NOT met'}")  # fmt: skip


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
    parser.add_argument(
        "--processes", type=int, default=1, help="LUS_EXPERT_PROCESSES of the server (default 1)"
    )
    parser.add_argument(
        "--connections",
        type=int,
        default=0,
        help="client connections the load is spread over (default: 1, or 2 per process)",
    )
    parser.add_argument(
        "--pin", action="store_true", help="LUS_EXPERT_PIN_CPUS: one CPU per server process"
    )
    args = parser.parse_args()
    connections = args.connections or (1 if args.processes == 1 else 2 * args.processes)

    when = time.strftime("%Y-%m-%d %H:%M")
    print(f"machine: {os.cpu_count()} CPUs; python {sys.version.split()[0]}; {when}; "
          f"server processes {args.processes}{' pinned' if args.pin else ''}, "
          f"client connections {connections}")  # fmt: skip
    model, x, y = fit_mlp_large()
    onnx = to_onnx_bytes(model, x)
    classes = tuple(str(c) for c in model.classes_)  # type: ignore[attr-defined]
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp) / "registry"
        build_registry(root, onnx, classes, summary_of(x, y))
        proc, port = start_server(root, args.processes, args.pin)
        try:
            print(
                f"expert server pid {proc.pid}, port {port}; RSS at start {rss_mb(proc.pid):.0f} MB"
            )
            ours = asyncio.run(bench_ours(port, x, args.seconds, proc.pid, connections))
            explained, plain = predict_requests(x)
            h2_connections = max(connections, 2)
            for key, request, what in (
                ("h2load_c16", explained, "default"),
                ("h2load_plain_c16", plain, "max_contributions=0"),
            ):
                figure = h2load_predict(
                    port,
                    request,
                    concurrency=16,
                    connections=h2_connections,
                    seconds=args.seconds,
                    server_pid=proc.pid,
                    name=f"Predict ({what}) c=16, h2load x{h2_connections} conn.",
                )
                if figure is not None:
                    ours[key] = figure
            rss = rss_total_mb(proc.pid)
            print(f"RSS with {N_TASKS} tasks loaded: {rss:.0f} MB (all server processes)")
            print_targets(ours, rss)
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
