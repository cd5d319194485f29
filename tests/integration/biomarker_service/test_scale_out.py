"""Scale-out on one machine: 2 biomarker and 3 expert replicas (real processes) sharing one Redis.

Clients balance per call over the replicas (round_robin) and retry transient failures. One replica
of each tier is killed mid-load: calls keep succeeding, and nothing registered or stored is lost.
"""

from __future__ import annotations

import json
import threading
import time
import urllib.request
from contextlib import ExitStack
from pathlib import Path

import grpc
import numpy as np
import pytest

redis = pytest.importorskip("redis")

from lus.biomarker.v1 import biomarker_service_pb2 as bpb  # noqa: E402
from lus.biomarker.v1 import biomarker_service_pb2_grpc as bpb_grpc  # noqa: E402
from lus.biomarker.v1 import schema_pb2  # noqa: E402
from lus.expert.v1 import expert_service_pb2 as epb  # noqa: E402
from lus.expert.v1 import expert_service_pb2_grpc as epb_grpc  # noqa: E402
from lus.rpc.client import balanced_channel_options, static_target  # noqa: E402
from lus.schema import load_schema  # noqa: E402
from lus.synthetic import render_frames, sample_case, write_video  # noqa: E402
from lus.video import InputSpec  # noqa: E402
from tests.fakes import logistic_onnx, untrained_artifact  # noqa: E402
from tests.processes import (  # noqa: E402
    BIOMARKER_METRICS_PORT,
    BIOMARKER_PORT,
    EXPERT_PORTS,
    server_process,
)

pytestmark = [pytest.mark.redis, pytest.mark.slow]
REPO = Path(__file__).resolve().parents[3]
SCHEMA = load_schema()
TOKEN = (("authorization", "Bearer scale-secret"),)
WAIT_S = 60.0
"""Bound for polling loops; a healthy run needs a few seconds (not a timing assertion)."""


def make_artifact(path: Path) -> Path:
    spec = InputSpec(frames_per_clip=4, size=32, clips=2)
    return untrained_artifact(path, spec=spec, version="scale-test")


def make_videos(folder: Path, count: int) -> list[bytes]:
    videos = []
    for i in range(count):
        rng = np.random.default_rng(i)
        frames = render_frames(sample_case(rng), rng, frames=8, height=48, width=48)
        videos.append(write_video(folder / f"v{i}.mp4", frames, 15.0).read_bytes())
    return videos


def expert_onnx() -> bytes:
    def rule(x: np.ndarray) -> np.ndarray:
        return np.where(x[:, 7] > 0.5, "high", "low")

    return logistic_onnx(0, len(SCHEMA), rule=rule)


def predict_request(task: str = "scale_task") -> epb.PredictRequest:
    # Named as the biomarker replicas name their vectors (the artifact's version, torch fp32):
    # the expert answers only vectors of the model it was registered as fit on.
    vector = schema_pb2.BiomarkerVector(
        schema_id=SCHEMA.schema_id,
        values=[0.5] * len(SCHEMA),
        model=schema_pb2.ModelRef(version="scale-test"),
    )
    return epb.PredictRequest(task=task, vector=vector)


def wait_until_served(port: int, task: str) -> None:
    with grpc.insecure_channel(f"127.0.0.1:{port}") as channel:
        stub = epb_grpc.ExpertServiceStub(channel)
        deadline = time.monotonic() + WAIT_S
        while time.monotonic() < deadline:
            try:
                stub.Predict(predict_request(task), timeout=5)
                return
            except grpc.RpcError:
                time.sleep(0.05)
    pytest.fail(f"replica on port {port} never served {task}")


def handled_extracts(metrics_port: int) -> float:
    text = urllib.request.urlopen(f"http://127.0.0.1:{metrics_port}/metrics", timeout=5).read()
    total = 0.0
    for line in text.decode().splitlines():  # label order is the exporter's, so test each label
        if (
            line.startswith("lus_rpc_requests_total{")
            and 'method="Extract"' in line
            and 'code="OK"' in line
        ):
            total += float(line.rsplit(" ", 1)[1])
    return total


class Load:
    """Threads calling one RPC in a loop; records when each call ended and how."""

    def __init__(self, call: object, threads: int) -> None:
        self.call = call
        self.ok: list[float] = []
        self.failed: list[tuple[float, str]] = []
        self._stop = threading.Event()
        self._threads = [threading.Thread(target=self._run, args=(i,)) for i in range(threads)]

    def _run(self, worker: int) -> None:
        n = worker
        while not self._stop.is_set():
            try:
                self.call(n)  # type: ignore[operator]
                self.ok.append(time.monotonic())
            except grpc.RpcError as err:
                self.failed.append((time.monotonic(), f"{err.code().name}: {err.details()}"))
            n += len(self._threads)

    def __enter__(self) -> Load:
        for thread in self._threads:
            thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        for thread in self._threads:
            thread.join()


def test_scale_out_survives_a_killed_replica_of_each_tier(
    tmp_path: Path, shared_redis: tuple[str, str]
) -> None:
    artifact = make_artifact(tmp_path / "model.safetensors")
    videos = make_videos(tmp_path, 12)
    url, redis_prefix = shared_redis
    bio_env = {
        "LUS_BIOMARKER_ARTIFACT": str(artifact),
        "LUS_BIOMARKER_PORT": "0",
        "LUS_BIOMARKER_DEVICE": "cpu",
        "LUS_BIOMARKER_FEATURE_STORE": "redis",
        "LUS_BIOMARKER_REDIS_URL": url,
        "LUS_BIOMARKER_REDIS_PREFIX": f"{redis_prefix}fs:",
        "LUS_BIOMARKER_METRICS_PORT": "0",
        "LUS_BIOMARKER_DECODE_WORKERS": "1",
    }
    expert_env = {
        "LUS_EXPERT_PORT": "0",
        "LUS_EXPERT_ADMIN_PORT": "0",
        "LUS_EXPERT_REGISTRY_URL": url,
        "LUS_EXPERT_REGISTRY_PREFIX": f"{redis_prefix}reg:",
        "LUS_EXPERT_ADMIN_TOKENS": json.dumps({"scale": "scale-secret"}),
    }
    with ExitStack() as stack:
        bios = [
            stack.enter_context(
                server_process("biomarker_service", bio_env, BIOMARKER_PORT, BIOMARKER_METRICS_PORT)
            )
            for _ in range(2)
        ]
        experts = [
            stack.enter_context(server_process("expert_service", expert_env, EXPERT_PORTS))
            for _ in range(3)
        ]

        # A task registered through one replica is served by every replica.
        with grpc.insecure_channel(f"127.0.0.1:{experts[0].ports['admin']}") as admin_channel:
            admin = epb_grpc.ExpertAdminServiceStub(admin_channel)
            admin.RegisterExpert(
                epb.RegisterExpertRequest(
                    task="scale_task",
                    onnx_model=expert_onnx(),
                    schema_id=SCHEMA.schema_id,
                    classes=["high", "low"],
                    n_features=len(SCHEMA),
                    model_family="logreg",
                    lineage=epb.Lineage(biomarker_models=["scale-test"]),
                    # The shared (Redis) registry serves a version only once promoted.
                    promote_to="production",
                ),
                metadata=TOKEN,
                timeout=30,
            )
        for expert in experts:
            wait_until_served(expert.ports["grpc"], "scale_task")

        bio_target = static_target([f"127.0.0.1:{b.ports['grpc']}" for b in bios])
        expert_target = static_target([f"127.0.0.1:{e.ports['grpc']}" for e in experts])
        bio_channel = stack.enter_context(
            grpc.insecure_channel(
                bio_target,
                options=balanced_channel_options(
                    [bpb.DESCRIPTOR.services_by_name["BiomarkerService"].full_name]
                ),
            )
        )
        expert_channel = stack.enter_context(
            grpc.insecure_channel(
                expert_target,
                options=balanced_channel_options(
                    [epb.DESCRIPTOR.services_by_name["ExpertService"].full_name]
                ),
            )
        )
        bio_stub = bpb_grpc.BiomarkerServiceStub(bio_channel)
        expert_stub = epb_grpc.ExpertServiceStub(expert_channel)
        hashes: dict[int, str] = {}

        def extract(n: int) -> None:
            reply = bio_stub.Extract(bpb.ExtractRequest(video=videos[n % len(videos)]), timeout=30)
            hashes[n % len(videos)] = reply.pixel_hash

        def predict(n: int) -> None:
            expert_stub.Predict(predict_request(), timeout=10)

        with Load(extract, threads=3) as bio_load, Load(predict, threads=3) as expert_load:
            deadline = time.monotonic() + WAIT_S
            while (
                len(bio_load.ok) < 12 or len(expert_load.ok) < 50
            ) and time.monotonic() < deadline:
                time.sleep(0.05)
            spread = [handled_extracts(b.ports["metrics"]) for b in bios]
            killed_at = time.monotonic()
            bios[0].proc.kill()
            experts[0].proc.kill()
            while (
                sum(t > killed_at for t in bio_load.ok) < 12
                or sum(t > killed_at for t in expert_load.ok) < 50
            ) and time.monotonic() < deadline:
                time.sleep(0.05)

        # Load was spread over both biomarker replicas before the kill.
        assert all(count > 0 for count in spread), spread
        # Calls in flight on a killed replica may fail; the rest are retried on the others.
        assert len(bio_load.failed) <= 3 and len(expert_load.failed) <= 3, (
            bio_load.failed,
            expert_load.failed,
        )
        assert sum(t > killed_at for t in bio_load.ok) >= 12
        assert sum(t > killed_at for t in expert_load.ok) >= 50

        # Nothing stored is lost: every vector (the killed replica's too) is in the shared store.
        with grpc.insecure_channel(f"127.0.0.1:{bios[1].ports['grpc']}") as channel:
            survivor = bpb_grpc.BiomarkerServiceStub(channel)
            for pixel_hash in hashes.values():
                assert survivor.Lookup(bpb.LookupRequest(pixel_hash=pixel_hash), timeout=10).found
        # Nothing registered is lost: every surviving replica still serves the task.
        for expert in experts[1:]:
            with grpc.insecure_channel(f"127.0.0.1:{expert.ports['grpc']}") as channel:
                stub = epb_grpc.ExpertServiceStub(channel)
                assert list(
                    stub.GetTask(epb.GetTaskRequest(task="scale_task"), timeout=10).versions
                ) == [1]
                assert stub.Predict(predict_request(), timeout=10).label in {"high", "low"}
