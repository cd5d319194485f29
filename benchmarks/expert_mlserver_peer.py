"""Peer for ``expert_latency.py``: the same scikit-learn model served by Seldon MLServer.

Runs inside MLServer's own venv (``mlserver``, ``mlserver-sklearn``, ``uvloop==0.21.0``):

    /tmp/mlserver-venv/bin/python benchmarks/expert_mlserver_peer.py WORKDIR SECONDS

WORKDIR holds ``model.joblib`` and ``x.npy`` (64 vectors) written by ``expert_latency.py``.
Prints one human line per figure and ``PEER <name> <value>`` lines the caller parses.
"""

from __future__ import annotations

import asyncio
import json
import socket
import subprocess
import sys
import time
from pathlib import Path

import grpc
import numpy as np
from mlserver.grpc import dataplane_pb2 as dp
from mlserver.grpc import dataplane_pb2_grpc as dp_grpc


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def request(rows: np.ndarray) -> dp.ModelInferRequest:
    return dp.ModelInferRequest(
        model_name="mlp-large",
        inputs=[
            dp.ModelInferRequest.InferInputTensor(
                name="input-0",
                datatype="FP32",
                shape=list(rows.shape),
                contents=dp.InferTensorContents(fp32_contents=rows.ravel().tolist()),
            )
        ],
        outputs=[dp.ModelInferRequest.InferRequestedOutputTensor(name="predict_proba")],
    )


async def drive(stub: dp_grpc.GRPCInferenceServiceStub, message: object, concurrency: int,
                seconds: float) -> tuple[np.ndarray, float]:  # fmt: skip
    latencies: list[float] = []
    stop = time.perf_counter() + seconds

    async def worker() -> None:
        while time.perf_counter() < stop:
            start = time.perf_counter()
            await stub.ModelInfer(message)
            latencies.append((time.perf_counter() - start) * 1000)

    for _ in range(50):
        await stub.ModelInfer(message)
    began = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(concurrency)))
    return np.asarray(latencies), time.perf_counter() - began


async def bench(port: int, x: np.ndarray, seconds: float) -> None:
    async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as channel:
        stub = dp_grpc.GRPCInferenceServiceStub(channel)
        for key, message, c, per_call in (
            ("predict_c1", request(x[:1]), 1, 1),
            ("predict_c16", request(x[:1]), 16, 1),
            ("predict_c64", request(x[:1]), 64, 1),
            ("batch_c4", request(x[:64]), 4, 64),
        ):
            lat, wall = await drive(stub, message, c, seconds)
            p50, p99 = np.percentile(lat, [50, 99])
            rate = len(lat) / wall * per_call
            print(f"MLServer {key:<12} p50 {p50:6.3f} ms  p99 {p99:6.3f} ms  {rate:9.0f} pred/s")
            print(f"PEER {key}_p50 {p50:.4f}\nPEER {key}_rate {rate:.1f}")


def main() -> None:
    work, seconds = Path(sys.argv[1]), float(sys.argv[2])
    model_dir = work / "mlserver"
    model_dir.mkdir(exist_ok=True)
    (work / "model.joblib").rename(model_dir / "model.joblib")
    grpc_port = free_port()
    settings = {"grpc_port": grpc_port, "http_port": free_port(), "metrics_port": free_port(),
                "parallel_workers": 0, "host": "127.0.0.1"}  # fmt: skip
    (model_dir / "settings.json").write_text(json.dumps(settings))
    (model_dir / "model-settings.json").write_text(json.dumps({
        "name": "mlp-large",
        "implementation": "mlserver_sklearn.SKLearnModel",
        "parameters": {"uri": "./model.joblib"},
    }))  # fmt: skip
    mlserver = Path(sys.executable).parent / "mlserver"
    log = (work / "mlserver.log").open("w")
    proc = subprocess.Popen([str(mlserver), "start", str(model_dir)], stdout=log, stderr=log)
    try:
        x = np.load(work / "x.npy").astype(np.float32)
        deadline = time.monotonic() + 120
        while True:  # ready once the model answers
            try:
                with grpc.insecure_channel(f"127.0.0.1:{grpc_port}") as channel:
                    dp_grpc.GRPCInferenceServiceStub(channel).ModelInfer(request(x[:1]), timeout=2)
                break
            except grpc.RpcError:
                if time.monotonic() > deadline or proc.poll() is not None:
                    raise SystemExit((work / "mlserver.log").read_text()[-3000:]) from None
                time.sleep(0.5)
        asyncio.run(bench(grpc_port, x, seconds))
    finally:
        proc.terminate()
        proc.wait(timeout=30)
        log.close()


if __name__ == "__main__":
    main()
