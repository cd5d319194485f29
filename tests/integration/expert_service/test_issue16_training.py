"""Issue 16, training on other teams' data and without bounds: TrainExpert takes no video
hashes unless configured (the vector-recovery attack), small cohorts publish coarse summaries
and no k-NN, and jobs are bounded: examples, jobs per team (checked before any lookup), a fit
timeout and a memory limit on the fitting process."""

from __future__ import annotations

import asyncio
import threading
import time
from pathlib import Path
from typing import Any

import grpc
import numpy as np
import pytest

from expert_service.server import create_server
from expert_service.settings import ExpertSettings
from expert_service.training.jobs import Progress
from expert_service.training.worker import FitOutcome, FitRequest, ProcessFitter
from lus.errors import DeadlineExpired, Overloaded
from lus.expert.v1 import expert_service_pb2 as pb
from lus.expert.v1 import expert_service_pb2_grpc as pb_grpc
from lus.feature_store.base import StoredVector
from tests.integration.expert_service.test_train_expert_rpc import (
    CARD,
    FINISHED,
    MODEL,
    RAD,
    SCHEMA,
    TOKENS,
    N,
    _refused,
    _request,
    _serve,
    _vectors,
)

VICTIM_HASH = "ab" * 32
VICTIM = tuple(float(v) for v in np.random.default_rng(7).random(N))


class _CountingStore:
    """A feature store holding one study another team uploaded; counts lookups."""

    def __init__(self) -> None:
        self.lookups = 0
        self._item = StoredVector(VICTIM_HASH, MODEL, SCHEMA.schema_id, VICTIM, (), "2026-01-01")

    def get(self, pixel_hash: str, model_version: str | None = None) -> StoredVector | None:
        self.lookups += 1
        return self._item if pixel_hash == VICTIM_HASH else None


def _attack() -> tuple[pb.TrainExpertRequest, np.ndarray]:
    """The reported attack: 11 vectors of one's own plus the victim's video hash; the card's
    published feature means then give back the victim's vector (12 x mean - own sum)."""
    own = _vectors(11, 1, seed=3)
    request = _request(own, task="probe", family="logreg")
    request.examples.add(video_hash=VICTIM_HASH, label="covid", patient_id="patient-victim")
    return request, np.asarray([values for values, _, _ in own])


async def _finished(admin: Any, job: pb.TrainingJob, metadata: Any) -> pb.TrainingJob:
    for _ in range(3000):  # a bound on polling, not a timing
        if job.state in FINISHED:
            return job
        await asyncio.sleep(0.02)
        job = await admin.GetTrainingJob(
            pb.GetTrainingJobRequest(job_id=job.job_id), metadata=metadata
        )
    raise AssertionError(f"job {job.job_id} did not finish")


def test_training_cannot_include_another_teams_study(tmp_path: Path) -> None:
    """The reported attack is refused: a hash is looked up among the team's own uploads only
    (the store's owner records; this store records none, so nothing is anyone's), and another
    team's study reads exactly as a video never analysed."""
    store = _CountingStore()

    async def scenario(channel: Any, admin_channel: Any, _: str) -> None:
        admin = pb_grpc.ExpertAdminServiceStub(admin_channel)
        request, _own = _attack()
        err = await _refused(admin.TrainExpert(request, metadata=CARD))
        assert err.code() == grpc.StatusCode.NOT_FOUND
        never_seen = "cd" * 32
        request.examples[-1].video_hash = never_seen
        other = await _refused(admin.TrainExpert(request, metadata=CARD))
        assert other.code() == err.code()
        assert other.details() == (err.details() or "").replace(VICTIM_HASH, never_seen)

    _serve(tmp_path / "registry", scenario, store=store)


def test_a_small_cohorts_summary_does_not_give_back_a_vector(tmp_path: Path) -> None:
    """Where hashes are allowed (one team's own feature store), a 12-patient set's published
    means are coarse: 12 x mean - the attacker's own vectors is not the victim's vector."""
    store = _CountingStore()

    async def scenario(channel: Any, admin_channel: Any, _: str) -> None:
        admin = pb_grpc.ExpertAdminServiceStub(admin_channel)
        request, own = _attack()
        job = await _finished(admin, await admin.TrainExpert(request, metadata=CARD), CARD)
        assert job.state == pb.TRAINING_JOB_STATE_SUCCEEDED, job.error
        mean = np.asarray(job.card.training_summary.feature_mean)
        recovered = 12 * mean - own.sum(axis=0)
        assert np.allclose(mean * 10, np.round(mean * 10), atol=1e-4)  # multiples of 0.1
        assert np.abs(recovered - np.asarray(VICTIM)).max() > 0.1

        knn = _request(_vectors(12, 1), task="other", family="knn")
        err = await _refused(admin.TrainExpert(knn, metadata=CARD))
        assert err.code() == grpc.StatusCode.INVALID_ARGUMENT
        assert "k-NN keeps its training vectors" in (err.details() or "")

    _serve(tmp_path / "registry", scenario, store=store, training_video_hash=True)


def test_jobs_per_team_and_examples_are_capped_before_lookups(tmp_path: Path) -> None:
    store = _CountingStore()
    release = threading.Event()

    async def main() -> None:
        config = ExpertSettings(
            port=0,
            registry_dir=tmp_path / "registry",
            admin_tokens=TOKENS,
            training_jobs_per_team=2,
            training_max_examples=20,
            training_video_hash=True,
        )
        fitter = _Blocking(release)
        server = await create_server(config, feature_store=store, fitter=fitter)  # type: ignore[arg-type]
        try:
            async with grpc.aio.insecure_channel(f"127.0.0.1:{server.admin_port}") as channel:
                admin = pb_grpc.ExpertAdminServiceStub(channel)
                rows = _vectors(6, 2)
                for _ in range(2):
                    await admin.TrainExpert(_request(rows, family="logreg"), metadata=RAD)
                err = await _refused(admin.TrainExpert(_request(rows), metadata=RAD))
                assert err.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
                assert "has 2 training jobs" in (err.details() or "")
                assert "LUS_EXPERT_TRAINING_JOBS_PER_TEAM" in (err.details() or "")
                # Another team is not held up by radiology's jobs.
                other = _request(rows, task="cardio", family="logreg")
                assert (await admin.TrainExpert(other, metadata=CARD)).job_id
                # Over the example cap: refused before a single feature-store lookup.
                many = _request(_vectors(11, 2), task="many")
                many.examples[0].ClearField("vector")
                many.examples[0].video_hash = VICTIM_HASH
                err = await _refused(admin.TrainExpert(many, metadata=CARD))
                assert err.code() == grpc.StatusCode.INVALID_ARGUMENT
                assert "holds 22 examples, over the limit of 20" in (err.details() or "")
                assert store.lookups == 0
        finally:
            release.set()
            await server.stop(None)

    asyncio.run(main())


class _Blocking:
    """A ``Fitter`` whose fits wait for ``release`` and then fail."""

    def __init__(self, release: threading.Event) -> None:
        self._release = release

    def fit(self, job_id: str, request: FitRequest, progress: Progress) -> FitOutcome:
        self._release.wait(30.0)
        raise Overloaded("released by the test")

    def release(self) -> None:
        """No process to stop."""


def _sleeps(request: FitRequest, progress: Progress) -> FitOutcome:
    time.sleep(600)
    raise AssertionError("not reached")


def _allocates(request: FitRequest, progress: Progress) -> FitOutcome:
    hoard = bytearray(1536 * 2**20)  # 1.5 GiB, over the test's limit
    raise AssertionError(f"allocated {len(hoard)} bytes")


def _request_to_fit() -> FitRequest:
    return FitRequest(np.zeros((2, 3), np.float32), ("a", "b"), ("p", "q"), "logreg", 0)


def test_a_fit_past_its_timeout_is_stopped() -> None:
    fitter = ProcessFitter(_sleeps, timeout_s=2.0)
    try:
        with pytest.raises(DeadlineExpired, match="LUS_EXPERT_TRAINING_FIT_TIMEOUT_S"):
            fitter.fit("job", _request_to_fit(), lambda fraction, stage: None)
    finally:
        fitter.release()


def test_a_fit_past_its_memory_limit_fails_and_the_server_stays() -> None:
    fitter = ProcessFitter(_allocates, memory_bytes=1024 * 2**20)
    try:
        with pytest.raises(Overloaded, match="LUS_EXPERT_TRAINING_MEMORY_BYTES"):
            fitter.fit("job", _request_to_fit(), lambda fraction, stage: None)
    finally:
        fitter.release()
