"""Archive, start, call and stop TorchServe from its own venv, for the biomarker peer benchmark.

``torchserve(...)`` packs the artifact and ``tsm_video_handler.py`` into a ``.mar``, starts
``torchserve --start`` with every port, log, pid file and unpacked model in a private folder,
waits until its workers are ready, yields a blocking HTTP prediction call and stops the server.
"""

from __future__ import annotations

import http.client
import json
import os
import socket
import subprocess
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import numpy as np

MODEL_NAME = "tsm"
HANDLER = Path(__file__).resolve().parent / "tsm_video_handler.py"
WORKER_FAILED = ("Backend worker error", "Load model failed", "Auto recovery failed")
"""ts_log.log lines that mean the worker cannot start (TorchServe itself retries for ever)."""
Predict = Callable[[bytes], np.ndarray]
"""MP4 bytes in, the averaged biomarker vector out; blocking, safe to call from threads."""


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def tail(path: Path, chars: int = 3000) -> str:
    return path.read_text(errors="replace")[-chars:] if path.exists() else f"({path} missing)"


def layout(server: str) -> tuple[int, int]:
    """``"torchserve-2x1"`` -> 2 worker processes of 1 torch thread each."""
    workers, _, threads = server.removeprefix("torchserve-").partition("x")
    if not (workers.isdigit() and threads.isdigit()):
        raise SystemExit(f"{server!r}: say torchserve-WORKERSxTHREADS, e.g. torchserve-1x2")
    return int(workers), int(threads)


def archive(
    peer_venv: Path, artifact: Path, tsdir: Path, *, server: str, batch: int, max_wait_ms: float
) -> Path:
    """A model store holding ``tsm.mar``: artifact, handler, batching and worker settings."""
    workers, threads = layout(server)
    config = tsdir / "model-config.yaml"
    config.write_text(
        f"minWorkers: {workers}\nmaxWorkers: {workers}\n"
        f"batchSize: {batch}\nmaxBatchDelay: {round(max_wait_ms)}\n"
        f"responseTimeout: 600\nhandler:\n  torch_threads: {threads}\n"
    )
    store = tsdir / "store"
    store.mkdir()
    subprocess.run(
        [
            str(peer_venv / "bin" / "torch-model-archiver"),
            *("--model-name", MODEL_NAME, "--version", "1.0"),
            *("--serialized-file", str(artifact), "--handler", str(HANDLER)),
            *("--config-file", str(config), "--export-path", str(store)),
        ],
        check=True,
    )
    return store


def write_properties(tsdir: Path) -> tuple[Path, int, int]:
    """config.properties on free loopback ports, metrics off; plus inference, management ports."""
    inference, management, grpc = free_port(), free_port(), free_port()
    properties = tsdir / "config.properties"
    properties.write_text(
        f"inference_address=http://127.0.0.1:{inference}\n"
        f"management_address=http://127.0.0.1:{management}\n"
        f"metrics_address=http://127.0.0.1:{free_port()}\n"
        f"grpc_inference_port={grpc}\ngrpc_management_port={grpc + 1}\n"
        f"initial_worker_port={free_port()}\n"
        "disable_system_metrics=true\nenable_metrics_api=false\n"
        "install_py_dep_per_model=false\njob_queue_size=1000\n"
    )
    return properties, inference, management


@contextmanager
def torchserve(
    peer_venv: Path,
    artifact: Path,
    *,
    server: str,
    batch: int,
    max_wait_ms: float,
    pythonpath: Path,
    probe: bytes,
) -> Iterator[Predict]:
    """``torchserve --start`` from ``peer_venv``; yields a blocking HTTP prediction call.

    Args:
        peer_venv: the venv holding torchserve, torch-model-archiver and our package's imports.
        artifact: the safetensors artifact to serve; its folder gets a ``server`` subfolder.
        server: ``torchserve-WxT``: W worker processes of T torch threads each.
        batch: videos per forward pass (TorchServe ``batchSize``).
        max_wait_ms: TorchServe ``maxBatchDelay``, rounded to whole milliseconds.
        pythonpath: where the handler finds ``lus`` and ``biomarker_service``.
        probe: a small video sent once the workers are READY; its answer proves the handler.
    """
    tsdir = artifact.parent / server
    tsdir.mkdir()
    store = archive(peer_venv, artifact, tsdir, server=server, batch=batch, max_wait_ms=max_wait_ms)
    properties, port, management = write_properties(tsdir)
    # Its pid file, logs and unpacked models go under tsdir, so instances never collide.
    env = {k: v for k, v in os.environ.items() if not k.startswith(("LUS_", "TS_"))}
    env |= {
        "PYTHONPATH": str(pythonpath),
        "TMPDIR": str(tsdir),
        "TEMP": str(tsdir),
        "LOG_LOCATION": str(tsdir / "logs"),
        "METRICS_LOCATION": str(tsdir / "logs"),
        "PATH": f"{peer_venv / 'bin'}{os.pathsep}{env.get('PATH', '')}",
    }
    command = [str(peer_venv / "bin" / "torchserve")]
    with (tsdir / "torchserve.out").open("w") as log:  # the frontend's console, apart from ours
        subprocess.run(
            [
                *command,
                *("--start", "--ncs", "--disable-token-auth"),
                *("--model-store", str(store), "--ts-config", str(properties)),
                *("--models", f"{MODEL_NAME}={MODEL_NAME}.mar"),
            ],
            env=env,
            cwd=tsdir,
            check=True,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        try:
            predict = http_predictor(port)
            wait_ready(management, tsdir / "logs")
            predict(probe)
            yield predict
        finally:
            subprocess.run(
                [*command, "--stop", "--foreground"],
                env=env,
                cwd=tsdir,
                timeout=120,
                check=False,
                stdout=log,
                stderr=subprocess.STDOUT,
            )


def http_predictor(port: int) -> Predict:
    """POSTs MP4 bytes to ``/predictions/tsm`` on one keep-alive connection per thread."""
    local = threading.local()

    def predict(video: bytes) -> np.ndarray:
        if getattr(local, "conn", None) is None:
            local.conn = http.client.HTTPConnection("127.0.0.1", port, timeout=600)
        try:
            local.conn.request(
                "POST",
                f"/predictions/{MODEL_NAME}",
                body=video,
                headers={"Content-Type": "application/octet-stream"},
            )
            response = local.conn.getresponse()
            body = response.read()
        except (OSError, http.client.HTTPException):
            local.conn.close()
            local.conn = None
            raise
        if response.status != 200:
            raise RuntimeError(f"TorchServe answered {response.status}: {body[:300]!r}")
        return np.asarray(json.loads(body), dtype=np.float32)

    return predict


def wait_ready(management_port: int, logs: Path) -> None:
    """Until every worker of the model is READY, by the management API.

    (A prediction sent earlier waits in TorchServe's queue for a worker that may never start.)
    """
    deadline = time.monotonic() + 600
    while True:
        conn = http.client.HTTPConnection("127.0.0.1", management_port, timeout=10)
        try:
            conn.request("GET", f"/models/{MODEL_NAME}")
            response = conn.getresponse()
            body = response.read()
            workers = json.loads(body)[0]["workers"] if response.status == 200 else []
            if workers and all(worker["status"] == "READY" for worker in workers):
                return
        except (OSError, http.client.HTTPException, ValueError, LookupError):
            pass  # the frontend is still starting
        finally:
            conn.close()
        log = tail(logs / "ts_log.log", 10**6)
        if any(sign in log for sign in WORKER_FAILED) or time.monotonic() > deadline:
            raise SystemExit(f"TorchServe's worker did not start:\n{tail(logs / 'model_log.log')}")
        time.sleep(1)


def peer_versions(peer_venv: Path) -> str:
    """torchserve, torch-model-archiver and torch in the peer venv, and the Java that runs it."""
    peer = subprocess.run(
        [
            str(peer_venv / "bin" / "python"),
            "-c",
            "import importlib.metadata as m; print(*(f'{p} {m.version(p)}' for p in "
            "('torchserve', 'torch-model-archiver', 'torch')), sep=', ')",
        ],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()
    java_home = os.environ.get("JAVA_HOME")
    java = str(Path(java_home) / "bin" / "java") if java_home else "java"
    java_version = subprocess.run([java, "-version"], capture_output=True, text=True, check=True)
    return f"peer venv: {peer}; {java_version.stderr.splitlines()[0]}"
