"""``lus serve``: both tiers in one process, TrainExpert answered, one drain on SIGTERM."""

from __future__ import annotations

import json
import signal
import time
from pathlib import Path

import grpc
import numpy as np
from grpc_health.v1 import health_pb2, health_pb2_grpc

from lus.biomarker.v1 import schema_pb2
from lus.expert.v1 import expert_service_pb2 as epb
from lus.expert.v1 import expert_service_pb2_grpc as epb_grpc
from lus.schema import load_schema
from lus.video import InputSpec
from tests.fakes import untrained_artifact
from tests.processes import LOCAL_STACK_PORTS, server_process

SCHEMA = load_schema()
RAD = (("authorization", "Bearer rad-secret"),)
FINISHED = (epb.TRAINING_JOB_STATE_SUCCEEDED, epb.TRAINING_JOB_STATE_FAILED)


def _artifact(root: Path) -> Path:
    spec = InputSpec(frames_per_clip=4, size=32, clips=2)
    return untrained_artifact(root / "model.safetensors", spec=spec, version="serve-test", width=4)


def _train_request() -> epb.TrainExpertRequest:
    """12 patients, 2 vectors each: odd patients have COVID, shown in the first four values."""
    rng = np.random.default_rng(0)
    request = epb.TrainExpertRequest(task="covid", schema_id=SCHEMA.schema_id, family="logreg")
    for patient in range(12):
        for _ in range(2):
            values = rng.random(len(SCHEMA)) * 0.5
            values[:4] += 0.4 * (patient % 2)
            request.examples.add(
                vector=schema_pb2.BiomarkerVector(
                    values=values.tolist(), model=schema_pb2.ModelRef(version="serve-test")
                ),
                label="covid" if patient % 2 else "healthy",
                patient_id=f"patient-{patient}",
            )
    return request


def _health(address: str) -> int:
    with grpc.insecure_channel(address) as channel:
        request = health_pb2.HealthCheckRequest(service="")
        return int(health_pb2_grpc.HealthStub(channel).Check(request, timeout=30).status)


def test_lus_serve_runs_both_tiers_fits_experts_and_drains_on_sigterm(tmp_path: Path) -> None:
    args = ["serve", "--artifact", str(_artifact(tmp_path)), "--registry", str(tmp_path / "reg")]
    args += ["--biomarker-port", "0", "--expert-port", "0", "--expert-admin-port", "0"]
    env = {"LUS_EXPERT_ADMIN_TOKENS": json.dumps({"radiology": "rad-secret"})}
    with server_process("lus_cli", env, LOCAL_STACK_PORTS, args=args) as server:
        for name in ("biomarker", "grpc", "admin"):
            assert _health(f"127.0.0.1:{server.ports[name]}") == (
                health_pb2.HealthCheckResponse.SERVING
            )
        with grpc.insecure_channel(f"127.0.0.1:{server.ports['admin']}") as channel:
            admin = epb_grpc.ExpertAdminServiceStub(channel)
            job = admin.TrainExpert(_train_request(), metadata=RAD, timeout=30)
            for _ in range(3000):  # bounded poll, not a timing assertion
                if job.state in FINISHED:
                    break
                time.sleep(0.02)
                lookup = epb.GetTrainingJobRequest(job_id=job.job_id)
                job = admin.GetTrainingJob(lookup, metadata=RAD, timeout=30)
        assert job.state == epb.TRAINING_JOB_STATE_SUCCEEDED, job.error
        assert (job.card.task, job.card.version) == ("covid", 1)
        assert list(job.card.lineage.biomarker_models) == ["serve-test"]

        server.proc.send_signal(signal.SIGTERM)
        assert server.proc.wait(timeout=60) == 0
    log = "".join(server.log)
    assert log.count("shutting down: draining for up to 5.0 s") == 1  # both tiers, one drain
