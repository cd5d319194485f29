"""TrainingJobs: states, progress, the queue bound, ownership, expiry, close and the idle hook."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator

import grpc
import pytest

from expert_service.training.jobs import (
    FINISHED,
    JobState,
    JobStatus,
    Progress,
    TrainingJobs,
    TrainingLimits,
)
from lus.errors import InvalidInput, NotFound, NotReady, Overloaded, PermissionDenied


class _Gate:
    """A job body that reports it started, then waits until released."""

    def __init__(self, result: str = "done") -> None:
        self.started = threading.Event()
        self.release = threading.Event()
        self.result = result

    def __call__(self, job_id: str, progress: Progress) -> str:
        self.started.set()
        assert self.release.wait(10), "test never released the job"
        return self.result


class _Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def _finished(jobs: TrainingJobs[str], job_id: str, owner: str = "rad") -> JobStatus[str]:
    """Wait (bounded; not a timing assertion) for a job to finish."""
    for _ in range(2000):
        status = jobs.get(job_id, owner)
        if status.state in FINISHED:
            return status
        time.sleep(0.005)
    raise AssertionError(f"job {job_id} did not finish")


@pytest.fixture
def jobs() -> Iterator[TrainingJobs[str]]:
    manager: TrainingJobs[str] = TrainingJobs(TrainingLimits(workers=1, queue=1))
    yield manager
    manager.close()


def test_a_job_goes_from_queued_through_running_to_succeeded(jobs: TrainingJobs[str]) -> None:
    gate = _Gate("v1")
    submitted = jobs.submit("covid", "rad", gate)
    assert (submitted.state, submitted.progress, submitted.task) == (JobState.QUEUED, 0.0, "covid")
    assert gate.started.wait(10)
    running = jobs.get(submitted.job_id, "rad")
    assert running.state is JobState.RUNNING and running.started_at
    gate.release.set()
    done = _finished(jobs, submitted.job_id)
    assert (done.state, done.progress, done.result, done.error) == (
        JobState.SUCCEEDED,
        1.0,
        "v1",
        "",
    )
    assert done.finished_at >= done.started_at >= done.created_at


def test_progress_only_moves_forward_and_stays_within_0_and_1(jobs: TrainingJobs[str]) -> None:
    seen: list[tuple[float, str]] = []
    gate = _Gate()

    def body(job_id: str, progress: Progress) -> str:
        for fraction, stage in ((0.5, "half"), (0.3, "back"), (7.0, "over")):
            progress(fraction, stage)
            status = jobs.get(job_id, "rad")
            seen.append((status.progress, status.stage))
        return gate(job_id, progress)

    job = jobs.submit("covid", "rad", body)
    gate.release.set()
    _finished(jobs, job.job_id)
    assert seen == [(0.5, "half"), (0.5, "back"), (1.0, "over")]


def test_a_full_queue_refuses_with_resource_exhausted(jobs: TrainingJobs[str]) -> None:
    running, waiting = _Gate(), _Gate()
    first = jobs.submit("covid", "rad", running)
    assert running.started.wait(10)
    second = jobs.submit("covid", "rad", waiting)  # the one queue place
    with pytest.raises(Overloaded, match="2 jobs running or waiting") as refused:
        jobs.submit("covid", "rad", _Gate())
    assert refused.value.code is grpc.StatusCode.RESOURCE_EXHAUSTED
    assert jobs.get(second.job_id, "rad").state is JobState.QUEUED
    running.release.set()
    waiting.release.set()
    assert _finished(jobs, first.job_id).state is JobState.SUCCEEDED
    assert _finished(jobs, second.job_id).state is JobState.SUCCEEDED
    third = jobs.submit("covid", "rad", _Gate())  # room again once the queue drained
    assert third.state is JobState.QUEUED


def test_a_domain_error_fails_the_job_with_its_status_and_message(
    jobs: TrainingJobs[str],
) -> None:
    def body(job_id: str, progress: Progress) -> str:
        raise InvalidInput("class 'b' has 1 patient(s); add 2 more")

    failed = _finished(jobs, jobs.submit("covid", "rad", body).job_id)
    assert failed.state is JobState.FAILED
    assert failed.error_code is grpc.StatusCode.INVALID_ARGUMENT
    assert failed.error == "class 'b' has 1 patient(s); add 2 more"
    assert failed.result is None


def test_an_unexpected_error_fails_the_job_without_leaking_internals(
    jobs: TrainingJobs[str],
) -> None:
    def body(job_id: str, progress: Progress) -> str:
        raise RuntimeError("secret internal detail")

    failed = _finished(jobs, jobs.submit("covid", "rad", body).job_id)
    assert failed.error_code is grpc.StatusCode.INTERNAL
    assert "secret" not in failed.error and "server logs" in failed.error


def test_only_the_submitting_team_reads_a_job(jobs: TrainingJobs[str]) -> None:
    gate = _Gate()
    job = jobs.submit("covid", "rad", gate)
    with pytest.raises(PermissionDenied, match="belongs to team 'rad'"):
        jobs.get(job.job_id, "cardio")
    with pytest.raises(NotFound, match="no training job"):
        jobs.get("not-a-job", "rad")
    gate.release.set()
    _finished(jobs, job.job_id)


def test_finished_jobs_expire_after_keep_s_and_beyond_keep_jobs() -> None:
    clock = _Clock()
    limits = TrainingLimits(workers=1, queue=8, keep_s=10.0, keep_jobs=2)
    jobs: TrainingJobs[str] = TrainingJobs(limits, clock=clock)
    try:
        ids = []
        for _ in range(3):
            gate = _Gate()
            gate.release.set()
            ids.append(jobs.submit("covid", "rad", gate).job_id)
            _finished(jobs, ids[-1])
            clock.now += 1.0
        with pytest.raises(NotFound):  # the oldest of three, with room for two
            jobs.get(ids[0], "rad")
        assert jobs.get(ids[2], "rad").state is JobState.SUCCEEDED
        clock.now += 10.0
        with pytest.raises(NotFound):
            jobs.get(ids[2], "rad")
    finally:
        jobs.close()


def test_close_fails_queued_jobs_and_refuses_new_ones() -> None:
    jobs: TrainingJobs[str] = TrainingJobs(TrainingLimits(workers=1, queue=2))
    running = _Gate()
    first = jobs.submit("covid", "rad", running)
    assert running.started.wait(10)
    queued = jobs.submit("covid", "rad", _Gate())
    jobs.close()
    stopped = jobs.get(queued.job_id, "rad")
    assert (stopped.state, stopped.error_code) == (JobState.FAILED, grpc.StatusCode.UNAVAILABLE)
    with pytest.raises(NotReady):
        jobs.submit("covid", "rad", _Gate())
    running.release.set()  # the running job still finishes
    assert _finished(jobs, first.job_id).state is JobState.SUCCEEDED


def test_no_workers_takes_no_jobs() -> None:
    jobs: TrainingJobs[str] = TrainingJobs(TrainingLimits(workers=0))
    with pytest.raises(NotReady):
        jobs.submit("covid", "rad", _Gate())


def test_the_idle_hook_runs_once_nothing_is_queued_or_running() -> None:
    idle = threading.Event()
    jobs: TrainingJobs[str] = TrainingJobs(TrainingLimits(workers=1, idle_s=0.01), on_idle=idle.set)
    try:
        gate = _Gate()
        job = jobs.submit("covid", "rad", gate)
        assert gate.started.wait(10)
        assert not idle.is_set()  # a running job is not idle
        gate.release.set()
        _finished(jobs, job.job_id)
        assert idle.wait(10)
    finally:
        jobs.close()
