"""``LUS_EXPERT_PROCESSES=2``: two processes answer on one port, follow the registry and
are supervised (real ``python -m expert_service``, real connections on loopback)."""

from __future__ import annotations

import json
import os
import re
import signal
import time
from collections.abc import Callable
from pathlib import Path

import grpc
import pytest

from expert_service.card import ExpertDraft, Lineage
from expert_service.registry import LocalRegistry
from lus.biomarker.v1 import schema_pb2
from lus.expert.v1 import expert_service_pb2 as pb
from lus.expert.v1 import expert_service_pb2_grpc as pb_grpc
from lus.schema import load_schema
from tests.fakes import logistic_onnx
from tests.processes import EXPERT_PORTS, server_process

SCHEMA = load_schema()
N = len(SCHEMA)
MODEL = "biomarker-a"
VECTOR = schema_pb2.BiomarkerVector(
    schema_id=SCHEMA.schema_id, values=[0.4] * N, model=schema_pb2.ModelRef(version=MODEL)
)
CONNECTIONS = 16
"""Client connections; the kernel hashes each to a process, so all 16 landing on the same
one of two has probability 2**-15."""
WAIT_S = 15.0
"""Generous bound for polling loops (not a timing assertion)."""
TOKENS = {"radiology": "rad-secret"}


def _register(registry: LocalRegistry, seed: int) -> None:
    draft = ExpertDraft(
        "covid",
        logistic_onnx(seed, N),
        schema_id=SCHEMA.schema_id,
        classes=("covid", "healthy"),
        n_features=N,
        model_family="logreg",
        lineage=Lineage(biomarker_models=(MODEL,)),
    )
    registry.register(draft, owner="radiology")


def _workers(main_pid: int) -> list[int]:
    """Pids of the main process's children that serve (not multiprocessing's tracker)."""
    pids = []
    for task in Path(f"/proc/{main_pid}/task").iterdir():
        for child in (task / "children").read_text().split():
            cmdline = Path(f"/proc/{child}/cmdline").read_bytes()
            if b"multiprocessing.spawn" in cmdline:
                pids.append(int(child))
    return pids


def _until(condition: Callable[[], bool], what: str) -> None:
    deadline = time.monotonic() + WAIT_S
    while time.monotonic() < deadline:
        if condition():
            return
        time.sleep(0.05)
    pytest.fail(f"{what} not within {WAIT_S} s")


def _version(stub: pb_grpc.ExpertServiceStub, timeout: float = 5.0) -> int:
    answer = stub.Predict(pb.PredictRequest(task="covid", vector=VECTOR), timeout=timeout)
    return int(answer.version)


def _answers(stubs: list[pb_grpc.ExpertServiceStub], timeout: float) -> list[int | None]:
    versions: list[int | None] = []
    for stub in stubs:
        try:
            versions.append(_version(stub, timeout))
        except grpc.RpcError:
            versions.append(None)
    return versions


def test_two_processes_share_the_port_follow_the_registry_and_restart(tmp_path: Path) -> None:
    registry = LocalRegistry(tmp_path / "registry")
    _register(registry, seed=0)
    env = {
        "LUS_EXPERT_PORT": "0",
        "LUS_EXPERT_PROCESSES": "2",
        "LUS_EXPERT_REGISTRY_DIR": str(tmp_path / "registry"),
        "LUS_EXPERT_RESYNC_INTERVAL_S": "0.2",
        "LUS_EXPERT_ADMIN_TOKENS": json.dumps(TOKENS),
    }
    with server_process("expert_service", env, EXPERT_PORTS) as server:
        main = server.proc.pid
        _until(lambda: "serving port" in "".join(server.log), "the worker's start")
        (worker,) = _workers(main)
        # A local subchannel pool per channel: one TCP connection each, as separate clients.
        channels = [
            grpc.insecure_channel(
                f"127.0.0.1:{server.ports['grpc']}", options=[("grpc.use_local_subchannel_pool", 1)]
            )
            for _ in range(CONNECTIONS)
        ]
        stubs = [pb_grpc.ExpertServiceStub(channel) for channel in channels]
        try:
            assert _answers(stubs, timeout=5) == [1] * CONNECTIONS

            # With the main process frozen, only the worker's connections answer: both serve.
            os.kill(main, signal.SIGSTOP)
            try:
                frozen = _answers(stubs, timeout=0.5)
            finally:
                os.kill(main, signal.SIGCONT)
            assert 0 < frozen.count(1) < CONNECTIONS, frozen

            # A version registered elsewhere reaches every process through its own watcher.
            _register(registry, seed=1)
            registry.promote("covid", 2, "production")
            _until(lambda: _answers(stubs, timeout=5) == [2] * CONNECTIONS, "v2 everywhere")

            # A worker that dies is replaced; its clients reconnect and are answered again.
            os.kill(worker, signal.SIGKILL)
            _until(lambda: _workers(main) not in ([], [worker]), "a new worker")
            _until(lambda: _answers(stubs, timeout=2) == [2] * CONNECTIONS, "all answering")
            assert re.search(r"exited with -9 after \d+ s; starting it again", "".join(server.log))
            (replacement,) = _workers(main)
        finally:
            for channel in channels:
                channel.close()
        server.proc.send_signal(signal.SIGTERM)
        assert server.proc.wait(timeout=30) == 0
    assert not Path(f"/proc/{replacement}").exists(), "the worker outlived the main process"
