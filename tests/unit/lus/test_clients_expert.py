"""The expert clients' requests, built without a server: what each argument becomes on the wire."""

from __future__ import annotations

from pathlib import Path

import pytest

from lus.biomarker.v1 import schema_pb2
from lus.clients.expert import ExpertAdminClient, ExpertClient
from lus.expert.v1 import expert_service_pb2 as pb
from lus.rpc.client import ClientTls, client_tls


class _PredictStub:
    def __init__(self) -> None:
        self.requests: list[pb.PredictRequest] = []

    def Predict(self, request: pb.PredictRequest, *, timeout: float) -> pb.PredictResponse:
        self.requests.append(request)
        return pb.PredictResponse(task=request.task)


class _AdminStub:
    """Runs a job through QUEUED, RUNNING and SUCCEEDED, one state per call."""

    def __init__(self) -> None:
        self.metadata: list[object] = []
        self.states = [
            pb.TRAINING_JOB_STATE_QUEUED,
            pb.TRAINING_JOB_STATE_RUNNING,
            pb.TRAINING_JOB_STATE_SUCCEEDED,
        ]

    def _job(self, metadata: object) -> pb.TrainingJob:
        self.metadata.append(metadata)
        return pb.TrainingJob(job_id="j1", state=self.states.pop(0))

    def TrainExpert(
        self, request: pb.TrainExpertRequest, *, metadata: object, timeout: float
    ) -> pb.TrainingJob:
        return self._job(metadata)

    def GetTrainingJob(
        self, request: pb.GetTrainingJobRequest, *, metadata: object, timeout: float
    ) -> pb.TrainingJob:
        assert request.job_id == "j1"
        return self._job(metadata)


def test_predict_takes_a_vector_its_values_or_a_video_hash() -> None:
    stub = _PredictStub()
    with ExpertClient("127.0.0.1:1") as client:  # the channel connects lazily: never here
        client._stub = stub
        vector = schema_pb2.BiomarkerVector(
            schema_id="s@1", values=[0.25, 0.5], model=schema_pb2.ModelRef(version="m1")
        )
        client.predict("covid", vector)
        client.predict(
            "covid", [0.25, 0.5], schema_id="s@1", alias="staging", biomarker_model_version="m1"
        )
        client.predict("covid", video_hash="ab" * 32, version=3, max_contributions=0)
        client.predict("covid", video_hash="ab" * 32, biomarker_model_version="m2")
        for bad in [{}, {"vector": [0.1], "video_hash": "ab"}]:
            with pytest.raises(ValueError, match="vector or a video_hash"):
                client.predict("covid", **bad)  # type: ignore[arg-type]
    first, second, third, fourth = stub.requests
    assert first.vector == vector and not first.HasField("max_contributions")
    assert not first.biomarker_model_version  # a BiomarkerVector names its own model
    # Plain values carry the model in the vector, where the server reads a sent vector's model.
    assert second.vector == vector and second.alias == "staging"
    assert not second.biomarker_model_version
    assert (third.video_hash, third.version, third.max_contributions) == ("ab" * 32, 3, 0)
    assert third.HasField("max_contributions") and not third.HasField("vector")
    assert fourth.biomarker_model_version == "m2" and not fourth.HasField("vector")


def test_plain_values_without_a_model_name_none() -> None:
    stub = _PredictStub()
    with ExpertClient("127.0.0.1:1") as client:
        client._stub = stub
        client.predict("covid", [0.25, 0.5], schema_id="s@1")
    (request,) = stub.requests
    # No empty ModelRef is invented: the server then says the vector names no model.
    assert not request.vector.HasField("model")


def test_admin_calls_carry_the_bearer_token_and_follow_the_job() -> None:
    stub = _AdminStub()
    seen: list[int] = []
    with ExpertAdminClient("127.0.0.1:1", "rad-secret") as admin:
        admin._stub = stub
        job = admin.train_and_follow(
            pb.TrainExpertRequest(task="covid"), on_update=lambda j: seen.append(j.state), poll_s=0
        )
    assert job.state == pb.TRAINING_JOB_STATE_SUCCEEDED
    assert seen == [
        pb.TRAINING_JOB_STATE_QUEUED,
        pb.TRAINING_JOB_STATE_RUNNING,
        pb.TRAINING_JOB_STATE_SUCCEEDED,
    ]
    assert stub.metadata == [(("authorization", "Bearer rad-secret"),)] * 3


def test_client_tls_from_optional_files(tmp_path: Path) -> None:
    assert client_tls() is None  # no file: plaintext
    ca = tmp_path / "ca.pem"
    assert client_tls(ca) == ClientTls(ca_file=ca)
    assert ClientTls(server_name="expert.lus").options() == [
        ("grpc.ssl_target_name_override", "expert.lus")
    ]
    with pytest.raises(ValueError, match="both cert_file and key_file"):
        client_tls(ca, cert_file=tmp_path / "client.pem")


def test_a_missing_tls_file_fails_when_the_client_opens(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError):
        ExpertClient("localhost:1", tls=ClientTls(ca_file=tmp_path / "missing.pem"))
