"""``lus train expert --server``: fit an expert on the expert tier (TrainExpert) and follow the job.

The job lives in the memory of the replica that took it, so every call goes over one plain
channel (pick-first: one connection, one replica), not a round-robin one.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path

import grpc
import numpy as np

from lus.biomarker.v1 import schema_pb2
from lus.errors import InvalidInput
from lus.expert.v1 import expert_service_pb2 as epb
from lus.expert.v1 import expert_service_pb2_grpc as epb_grpc
from lus.rpc.server import MiB, message_size_options

TOKEN_VARIABLE = "LUS_ADMIN_TOKEN"
"""Environment variable the CLI reads the team's bearer token from when ``--token`` is unset."""
FINISHED = (epb.TRAINING_JOB_STATE_SUCCEEDED, epb.TRAINING_JOB_STATE_FAILED)


def training_request(
    vectors: np.ndarray,
    labels: list[str],
    patients: list[str],
    *,
    task: str,
    schema_id: str,
    family: str = "zoo",
    seed: int = 0,
    description: str = "",
    training_data: str = "",
    notice: str = "",
    promote_to: str = "",
) -> epb.TrainExpertRequest:
    """A ``TrainExpertRequest`` carrying one labelled vector per row."""
    if len(patients) != len(labels):
        raise InvalidInput("training on the server needs a patient id per vector")
    request = epb.TrainExpertRequest(
        task=task,
        schema_id=schema_id,
        family=family,
        seed=seed,
        description=description,
        training_data=training_data,
        notice=notice,
        promote_to=promote_to,
    )
    add = request.examples.add
    for row, label, patient in zip(np.asarray(vectors).tolist(), labels, patients, strict=True):
        add(vector=schema_pb2.BiomarkerVector(values=row), label=label, patient_id=patient)
    return request


def open_admin_channel(address: str, ca_file: Path | None = None) -> grpc.Channel:
    """A channel to the admin port; TLS when ``ca_file`` (the server's CA bundle) is given."""
    options = message_size_options(64 * MiB)
    if ca_file is None:
        return grpc.insecure_channel(address, options=options)
    credentials = grpc.ssl_channel_credentials(ca_file.read_bytes())
    return grpc.secure_channel(address, credentials, options=options)


def train_and_follow(
    channel: grpc.Channel,
    token: str,
    request: epb.TrainExpertRequest,
    *,
    on_update: Callable[[epb.TrainingJob], None] = lambda job: None,
    poll_s: float = 0.5,
    timeout_s: float = 3600.0,
) -> epb.TrainingJob:
    """Submit ``request`` and poll the job until it has finished, telling ``on_update`` each time.

    Raises:
        grpc.RpcError: The server refused the request (e.g. INVALID_ARGUMENT for a set too
            small, with the message saying what is missing) or a poll failed.
        TimeoutError: The job had not finished after ``timeout_s`` seconds.
    """
    stub = epb_grpc.ExpertAdminServiceStub(channel)
    metadata = (("authorization", f"Bearer {token}"),)
    job: epb.TrainingJob = stub.TrainExpert(request, metadata=metadata, timeout=60)
    deadline = time.monotonic() + timeout_s
    while True:
        on_update(job)
        if job.state in FINISHED:
            return job
        if time.monotonic() > deadline:
            raise TimeoutError(f"training job {job.job_id} still running after {timeout_s:.0f} s")
        time.sleep(poll_s)
        job = stub.GetTrainingJob(
            epb.GetTrainingJobRequest(job_id=job.job_id), metadata=metadata, timeout=30
        )


def describe_job(job: epb.TrainingJob) -> str:
    """One line on a finished job: the registered version and its metrics, or why it failed."""
    if job.state == epb.TRAINING_JOB_STATE_SUCCEEDED:
        card = job.card
        metrics = ", ".join(f"{k} {v:.3g}" for k, v in sorted(card.metrics.items()))
        aliases = ", ".join(f"{k} -> v{v}" for k, v in sorted(card.aliases.items()))
        line = f"registered {card.task} v{card.version} ({card.model_family}): {metrics}"
        return line + (f"; aliases {aliases}" if aliases else "")
    code = grpc.StatusCode.INTERNAL
    for status in grpc.StatusCode:
        if status.value[0] == job.error_code:
            code = status
    return f"training job {job.job_id} failed ({code.name}): {job.error}"
