"""Loads and test-runs a new ONNX expert in a child process with memory and time limits.

A 353-byte model passed every static check and took 424 MB when its session was created, on
every replica, at start-up (issue 16): onnxruntime folds constants while it builds a session,
so a model can allocate before any request arrives. The static checks
(``artifact_safety``) now refuse the operators that did it; this is the second line, for what
they cannot foresee. Before a model is loaded in a serving process (at registration, and on
each replica before a new version is swapped in), a child process with an address-space limit
(RLIMIT_AS) and a deadline builds its session and runs boundary vectors through it: all 0, all
1, 0.5, alternating 0/1 and a batch of varied vectors. A model that needs more memory or time,
crashes, or fails on them is refused. Each model (by sha256) is probed once per process.

Run as ``python -m expert_service.probe N_FEATURES MEMORY_BYTES`` with the model on stdin; the
child limits itself before it imports anything big. Exit status 0 = passed.
"""

from __future__ import annotations

import hashlib
import os
import resource
import subprocess
import sys
import threading
from dataclasses import dataclass
from pathlib import Path

from lus.errors import InvalidInput

PROBE_BATCH = 256
"""Vectors in the probe's largest batch: a model whose memory grows with the batch shows it."""
_PASSED_KEPT = 4096
"""sha256 of models that passed, kept so each is probed once per process."""
_SAFE_ENVIRONMENT = ("PATH", "PYTHONPATH", "LANG", "LC_ALL", "HOME", "TMPDIR")
"""The only environment the child gets: no tokens, no settings."""


@dataclass(frozen=True)
class ProbeLimits:
    """How much a model may take to load and answer the probe vectors.

    Attributes:
        memory_bytes: Address-space limit of the child (``LUS_EXPERT_PROBE_MEMORY_BYTES``).
        timeout_s: Deadline of the child (``LUS_EXPERT_PROBE_TIMEOUT_S``).
    """

    memory_bytes: int = 1024 * 2**20
    timeout_s: float = 20.0


_passed: set[str] = set()
_lock = threading.Lock()


def probe_model(onnx_bytes: bytes, n_features: int, limits: ProbeLimits) -> None:
    """Refuse ``onnx_bytes`` unless a limited child process loads and runs it.

    Raises:
        InvalidInput: It needed more than ``limits`` allow, crashed, or failed on the vectors
            (the message says which, never the model's own output).
    """
    digest = hashlib.sha256(onnx_bytes).hexdigest()
    with _lock:
        if digest in _passed:
            return
    environment = {k: v for k, v in os.environ.items() if k in _SAFE_ENVIRONMENT}
    environment.update(OPENBLAS_NUM_THREADS="1", OMP_NUM_THREADS="1")  # one thread's buffers
    # This package's folder first, so the child finds it whatever the working directory.
    package_root = str(Path(__file__).resolve().parents[1])
    environment["PYTHONPATH"] = os.pathsep.join(
        p for p in (package_root, environment.get("PYTHONPATH", "")) if p
    )
    command = [sys.executable, "-m", "expert_service.probe"]
    try:
        done = subprocess.run(
            [*command, str(n_features), str(limits.memory_bytes)],
            input=onnx_bytes,
            capture_output=True,
            timeout=limits.timeout_s,
            env=environment,
            check=False,
        )
    except subprocess.TimeoutExpired:
        raise InvalidInput(
            f"the ONNX model took over {limits.timeout_s:g} s to load and answer test vectors "
            "(setting LUS_EXPERT_PROBE_TIMEOUT_S)"
        ) from None
    if done.returncode != 0:
        reason = done.stderr.decode("utf-8", "replace").strip().splitlines()
        last = reason[-1][:200] if reason else f"exit status {done.returncode}"
        raise InvalidInput(
            f"the ONNX model failed to load and answer test vectors within "
            f"{limits.memory_bytes} bytes of memory (setting LUS_EXPERT_PROBE_MEMORY_BYTES): "
            f"{last}"
        )
    with _lock:
        if len(_passed) >= _PASSED_KEPT:
            _passed.clear()
        _passed.add(digest)


def _run(n_features: int, onnx_bytes: bytes) -> None:
    """The child: build the session, run the boundary vectors."""
    import numpy as np
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = 1
    options.inter_op_num_threads = 1
    options.log_severity_level = 3
    session = ort.InferenceSession(onnx_bytes, options, providers=["CPUExecutionProvider"])
    name = session.get_inputs()[0].name
    alternating = np.arange(n_features) % 2
    rng = np.random.default_rng(0)
    batches = [
        np.zeros((1, n_features)),
        np.ones((1, n_features)),
        np.full((1, n_features), 0.5),
        np.stack([alternating, 1 - alternating]),
        rng.random((PROBE_BATCH, n_features)),
        rng.integers(0, 2, (PROBE_BATCH, n_features)),
    ]
    for batch in batches:
        session.run(None, {name: batch.astype(np.float32)})


if __name__ == "__main__":
    limit = int(sys.argv[2])
    resource.setrlimit(resource.RLIMIT_AS, (limit, limit))  # before numpy or onnxruntime load
    try:
        _run(int(sys.argv[1]), sys.stdin.buffer.read())
    except MemoryError:
        print("out of memory", file=sys.stderr)
        raise SystemExit(3) from None
    except Exception as err:  # the parent reports the last line; the model's bytes stay here
        print(
            f"{type(err).__name__}: {str(err).splitlines()[0][:160] if str(err) else ''}",
            file=sys.stderr,
        )
        raise SystemExit(4) from None
