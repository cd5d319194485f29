"""Hot-reload latency: register a version through replica A, time until replica B serves it.

Starts a private ``redis-server`` on a free port (in a temporary folder) and two
``python -m expert_service`` processes sharing it, with default re-sync settings. Each trial
registers a new version of one task through A's admin port (``promote_to=production``) while
a client polls B's ``Predict(version=0)`` back to back; it prints, over the trials, p50 and max
of the time from sending RegisterExpert to B's first answer from the new version, and of the
part after A acknowledged the registration.

    python benchmarks/expert_reload.py [--trials 20]

Figures depend on the machine and its load; run it on a quiet machine.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path

import grpc
import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from lus.biomarker.v1 import schema_pb2  # noqa: E402
from lus.expert.v1 import expert_service_pb2 as pb  # noqa: E402
from lus.expert.v1 import expert_service_pb2_grpc as pb_grpc  # noqa: E402
from lus.schema import load_schema  # noqa: E402

SCHEMA = load_schema()
N = len(SCHEMA)
TOKEN = "bench-token"
AUTH = (("authorization", f"Bearer {TOKEN}"),)
BIOMARKER_MODEL = "bench-biomarker"
VECTOR = schema_pb2.BiomarkerVector(
    schema_id=SCHEMA.schema_id,
    values=[0.4] * N,
    model=schema_pb2.ModelRef(version=BIOMARKER_MODEL),
)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def models(count: int) -> list[bytes]:
    """``count`` different logistic-regression experts (the registry refuses repeated bytes)."""
    from skl2onnx import to_onnx
    from sklearn.linear_model import LogisticRegression

    out = []
    for seed in range(count):
        rng = np.random.default_rng(seed)
        x = rng.random((80, N)).astype(np.float32)
        y = np.where(x[:, 0] > x[:, 1], "covid", "healthy")
        model = LogisticRegression(random_state=seed).fit(x, y)
        out.append(bytes(to_onnx(model, x[:1], options={"zipmap": False}).SerializeToString()))
    return out


@contextmanager
def redis_server(folder: Path) -> Iterator[str]:
    binary = shutil.which("redis-server")
    if binary is None:
        raise SystemExit("redis-server is not installed")
    port = free_port()
    proc = subprocess.Popen(
        [binary, "--port", str(port), "--bind", "127.0.0.1", "--dir", str(folder), "--save", ""],
        stdout=subprocess.DEVNULL,
    )
    try:
        for _ in range(200):
            with socket.socket() as sock:
                if sock.connect_ex(("127.0.0.1", port)) == 0:
                    break
            time.sleep(0.02)
        yield f"redis://127.0.0.1:{port}/0"
    finally:
        proc.terminate()
        proc.wait(timeout=10)


@contextmanager
def replica(url: str) -> Iterator[tuple[int, int]]:
    """An expert server process on ephemeral ports; yields (public port, admin port)."""
    env = {**os.environ, "LUS_EXPERT_PORT": "0", "LUS_EXPERT_REGISTRY_URL": url,
           "LUS_EXPERT_ADMIN_TOKENS": json.dumps({"bench": TOKEN})}  # fmt: skip
    proc = subprocess.Popen(
        [sys.executable, "-m", "expert_service"], cwd=REPO, env=env, stderr=subprocess.PIPE,
        text=True,
    )  # fmt: skip
    assert proc.stderr is not None
    try:
        for line in proc.stderr:
            if match := re.search(r"listening on \S+:(\d+) \(admin on port (\d+)\)", line):
                threading.Thread(target=proc.stderr.read, daemon=True).start()
                yield int(match.group(1)), int(match.group(2))
                break
        else:
            raise RuntimeError("expert server did not start")
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=30)


def trial(admin: pb_grpc.ExpertAdminServiceStub, reader: pb_grpc.ExpertServiceStub,
          onnx: bytes) -> tuple[float, float]:  # fmt: skip
    """Seconds from sending the registration, and from its acknowledgement, to B serving it."""
    request = pb.RegisterExpertRequest(
        task="reload", onnx_model=onnx, schema_id=SCHEMA.schema_id, classes=["covid", "healthy"],
        n_features=N, model_family="logreg", promote_to="production",
        lineage=pb.Lineage(biomarker_models=[BIOMARKER_MODEL]),
    )  # fmt: skip
    sent = time.perf_counter()
    version = admin.RegisterExpert(request, metadata=AUTH, timeout=30).version
    acked = time.perf_counter()
    while True:
        try:
            answer = reader.Predict(pb.PredictRequest(task="reload", vector=VECTOR), timeout=5)
            if answer.version == version:
                break
        except grpc.RpcError as err:  # NOT_FOUND until the very first version arrives
            if err.code() != grpc.StatusCode.NOT_FOUND:
                raise
        if time.perf_counter() - sent > 30:
            raise RuntimeError(f"replica B did not serve v{version} within 30 s")
    done = time.perf_counter()
    return done - sent, done - acked


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--trials", type=int, default=20)
    args = parser.parse_args()
    when = time.strftime("%Y-%m-%d %H:%M")
    print(f"machine: {os.cpu_count()} CPUs; python {sys.version.split()[0]}; {when}")
    onnx = models(args.trials + 1)
    with tempfile.TemporaryDirectory() as tmp, ExitStack() as stack:
        url = stack.enter_context(redis_server(Path(tmp)))
        _, admin_port = stack.enter_context(replica(url))
        public_b, _ = stack.enter_context(replica(url))
        a = stack.enter_context(grpc.insecure_channel(f"127.0.0.1:{admin_port}"))
        b = stack.enter_context(grpc.insecure_channel(f"127.0.0.1:{public_b}"))
        admin, reader = pb_grpc.ExpertAdminServiceStub(a), pb_grpc.ExpertServiceStub(b)
        trial(admin, reader, onnx[0])  # warm-up: first version, channels connected
        totals, after_ack = zip(*(trial(admin, reader, m) for m in onnx[1:]), strict=True)
    for name, values in (("register sent -> served by B", totals),
                         ("register acknowledged -> served by B", after_ack)):  # fmt: skip
        ms = np.asarray(values) * 1000
        print(f"{name:<40} p50 {np.median(ms):7.1f} ms  max {ms.max():7.1f} ms"
              f"  ({len(ms)} trials; target: within 1 s)")  # fmt: skip


if __name__ == "__main__":
    main()
