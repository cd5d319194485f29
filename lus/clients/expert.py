"""Python clients of the expert service: answers (``ExpertClient``) and the admin calls.

    with ExpertClient("expert.hospital.local:50052") as experts:
        for task in experts.list_tasks():  # reply: a BiomarkerClient answer; its vector names
            print(task.task, experts.predict(task.task, reply.vector).label)  # its model

    with ExpertAdminClient("expert-admin.hospital.local:50053", token) as admin:
        job = admin.train_and_follow(request, on_update=print)

``ExpertClient`` balances calls round robin over every address its target resolves to and
retries UNAVAILABLE and RESOURCE_EXHAUSTED (``lus.rpc.client``): any replica answers a
prediction. ``ExpertAdminClient`` talks to the admin port over one plain (pick-first)
connection without retries: a training job lives in the memory of the replica that took it,
so every poll must reach that replica, and a submitted job is not submitted twice.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence

import grpc

from lus.biomarker.v1 import schema_pb2
from lus.expert.v1 import expert_service_pb2 as pb
from lus.expert.v1 import expert_service_pb2_grpc as pb_grpc
from lus.rpc.client import ClientTls, balanced_channel_options, open_channel
from lus.rpc.server import MiB, message_size_options

SERVICE = "lus.expert.v1.ExpertService"
ADMIN_SERVICE = "lus.expert.v1.ExpertAdminService"
AUTHORIZATION = "authorization"
"""Metadata key of the admin calls' ``Bearer <team token>``."""
FINISHED = (pb.TRAINING_JOB_STATE_SUCCEEDED, pb.TRAINING_JOB_STATE_FAILED)
"""Training job states after which a job no longer changes."""


class ExpertClient:
    """A blocking client of ``ExpertService`` over one channel; safe to share between threads."""

    def __init__(
        self,
        target: str,
        *,
        timeout_s: float = 10.0,
        max_message_bytes: int = 64 * MiB,
        max_attempts: int = 5,
        tls: ClientTls | None = None,
    ) -> None:
        """Open a channel (connections are made lazily).

        Args:
            target: "host:port" or any gRPC target, e.g. "dns:///lus-expert:50052".
            timeout_s: deadline of each call, retries included.
            max_message_bytes: send/receive limit; keep it at or below the server's.
            max_attempts: attempts per call for UNAVAILABLE / RESOURCE_EXHAUSTED (2..5).
            tls: CA (and client certificate) of a TLS port; None for plaintext.
        """
        self.timeout_s = timeout_s
        options = balanced_channel_options(
            [SERVICE], max_message_bytes=max_message_bytes, max_attempts=max_attempts
        )
        self._channel = open_channel(target, tls=tls, options=options)
        self._stub = pb_grpc.ExpertServiceStub(self._channel)

    def __enter__(self) -> ExpertClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        self._channel.close()

    def predict(
        self,
        task: str,
        vector: schema_pb2.BiomarkerVector | Sequence[float] | None = None,
        *,
        video_hash: str = "",
        schema_id: str = "",
        version: int = 0,
        alias: str = "",
        biomarker_model_version: str = "",
        max_contributions: int | None = None,
    ) -> pb.PredictResponse:
        """One expert's answer for a biomarker vector, or for a video the service has seen.

        Args:
            task: The expert's task, e.g. "covid".
            vector: A ``BiomarkerVector`` (as ``BiomarkerClient`` returns it) or its values.
            video_hash: Instead of a vector: the pixel hash of a video whose vector is in the
                expert tier's feature store.
            schema_id: With plain values: the schema they were made with, e.g.
                "gare2022-lus38.v1@1a2b3c4d5e6f" (the server checks it is the expert's).
            version: 0 = the version ``alias`` points to (in a shared registry only a
                promoted version answers; the embedded one serves the newest when none is).
            alias: With version 0: "production" (when empty) or "staging".
            biomarker_model_version: The biomarker model behind the answer. With plain values:
                the model that made them (``ModelRef.version``; required by every expert not
                fit on annotated findings). With ``video_hash``: whose stored vector ("" = the
                expert's own model's). A ``BiomarkerVector`` already names its model.
            max_contributions: Biomarker contributions to return; None = the server's default
                (5), 0 = none, which skips their extra compute.

        Raises:
            ValueError: Neither or both of ``vector`` and ``video_hash``.
            grpc.RpcError: The server's refusal, e.g. NOT_FOUND for an unknown task, or
                FAILED_PRECONDITION for a vector of a biomarker model the expert was not fit on
                (the reply's ``biomarker_model_version`` says which model an answer used).
        """
        if (vector is None) == (not video_hash):
            raise ValueError("give a vector or a video_hash, not both or neither")
        request = pb.PredictRequest(task=task, version=version, alias=alias, video_hash=video_hash)
        if isinstance(vector, schema_pb2.BiomarkerVector):
            request.vector.CopyFrom(vector)
            request.biomarker_model_version = biomarker_model_version
        elif vector is not None:
            request.vector.schema_id = schema_id
            request.vector.values.extend(vector)
            if biomarker_model_version:
                request.vector.model.version = biomarker_model_version
        else:
            request.biomarker_model_version = biomarker_model_version
        if max_contributions is not None:
            request.max_contributions = max_contributions
        reply: pb.PredictResponse = self._stub.Predict(request, timeout=self.timeout_s)
        return reply

    def list_tasks(self) -> list[pb.TaskSummary]:
        """Every task the service answers, with its versions, aliases and classes."""
        reply: pb.ListTasksResponse = self._stub.ListTasks(
            pb.ListTasksRequest(), timeout=self.timeout_s
        )
        return list(reply.tasks)

    def get_task(self, task: str, version: int = 0) -> pb.TaskCard:
        """A version's card (0 = the task's default version): metrics, data, history."""
        card: pb.TaskCard = self._stub.GetTask(
            pb.GetTaskRequest(task=task, version=version), timeout=self.timeout_s
        )
        return card


class ExpertAdminClient:
    """A blocking client of ``ExpertAdminService`` (the admin port), acting for one team.

    Every call carries the team's bearer token; the server answers UNAUTHENTICATED for an
    unknown token and PERMISSION_DENIED for another team's task.
    """

    def __init__(
        self,
        target: str | grpc.Channel,
        token: str,
        *,
        timeout_s: float = 60.0,
        max_message_bytes: int = 64 * MiB,
        tls: ClientTls | None = None,
    ) -> None:
        """Open a channel to ``target``, or use a channel the caller opened (and closes).

        Args:
            target: "host:port" of the admin port (one replica), or an open channel.
            token: The team's bearer token.
            timeout_s: deadline of each call.
            max_message_bytes: send/receive limit (training requests carry every example).
            tls: CA (and client certificate) of a TLS admin port; unused with a channel.
        """
        self.timeout_s = timeout_s
        self._metadata = ((AUTHORIZATION, f"Bearer {token}"),)
        if isinstance(target, grpc.Channel):
            self._channel, self._owned = target, False
        else:
            options = message_size_options(max_message_bytes)
            self._channel, self._owned = open_channel(target, tls=tls, options=options), True
        self._stub = pb_grpc.ExpertAdminServiceStub(self._channel)

    def __enter__(self) -> ExpertAdminClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        """Close the channel, unless the caller passed it in (it closes its own)."""
        if self._owned:
            self._channel.close()

    def register_expert(self, request: pb.RegisterExpertRequest) -> pb.TaskCard:
        """Register an ONNX model as its task's next version; its card comes back."""
        card: pb.TaskCard = self._stub.RegisterExpert(
            request, metadata=self._metadata, timeout=self.timeout_s
        )
        return card

    def promote(self, task: str, version: int, alias: str = "") -> pb.AliasResponse:
        """Point ``alias`` ("production" when empty, or "staging") at ``version``."""
        reply: pb.AliasResponse = self._stub.Promote(
            pb.PromoteRequest(task=task, version=version, alias=alias),
            metadata=self._metadata,
            timeout=self.timeout_s,
        )
        return reply

    def rollback(self, task: str, alias: str = "") -> pb.AliasResponse:
        """Point ``alias`` back at the version it pointed to before."""
        reply: pb.AliasResponse = self._stub.Rollback(
            pb.RollbackRequest(task=task, alias=alias),
            metadata=self._metadata,
            timeout=self.timeout_s,
        )
        return reply

    def delete_version(self, task: str, version: int) -> list[int]:
        """Delete a version no alias points to; the task's remaining versions come back."""
        reply: pb.DeleteVersionResponse = self._stub.DeleteVersion(
            pb.DeleteVersionRequest(task=task, version=version),
            metadata=self._metadata,
            timeout=self.timeout_s,
        )
        return list(reply.versions)

    def train_expert(self, request: pb.TrainExpertRequest) -> pb.TrainingJob:
        """Submit a training job; it comes back QUEUED once the whole request was checked.

        Raises:
            grpc.RpcError: e.g. INVALID_ARGUMENT for a set too small (the message says what is
                missing), RESOURCE_EXHAUSTED when the replica's training queue is full.
        """
        job: pb.TrainingJob = self._stub.TrainExpert(
            request, metadata=self._metadata, timeout=self.timeout_s
        )
        return job

    def training_job(self, job_id: str) -> pb.TrainingJob:
        """A job's state and progress (ask the replica that took it: keep this client)."""
        job: pb.TrainingJob = self._stub.GetTrainingJob(
            pb.GetTrainingJobRequest(job_id=job_id), metadata=self._metadata, timeout=self.timeout_s
        )
        return job

    def train_and_follow(
        self,
        request: pb.TrainExpertRequest,
        *,
        on_update: Callable[[pb.TrainingJob], None] = lambda job: None,
        poll_s: float = 0.5,
        timeout_s: float = 3600.0,
    ) -> pb.TrainingJob:
        """Submit ``request`` and poll the job until it has finished, telling ``on_update`` each
        time; the finished job (SUCCEEDED with its card, or FAILED with why) is returned.

        Raises:
            grpc.RpcError: The server refused the request or a poll failed.
            TimeoutError: The job had not finished after ``timeout_s`` seconds.
        """
        job = self.train_expert(request)
        deadline = time.monotonic() + timeout_s
        while True:
            on_update(job)
            if job.state in FINISHED:
                return job
            if time.monotonic() > deadline:
                raise TimeoutError(
                    f"training job {job.job_id} still running after {timeout_s:.0f} s"
                )
            time.sleep(poll_s)
            job = self.training_job(job.job_id)
