"""A bounded queue of training jobs, run a few (by default one) at a time, with their progress.

Knows nothing of fitting or gRPC: a job is a callable that reports progress and returns a
result. ``TrainingJobs`` runs it on a worker thread, tracks its state, refuses new jobs when its
queue is full and forgets finished jobs after a while, so memory stays bounded.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
import uuid
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from enum import Enum
from typing import Generic, TypeVar

import grpc

from expert_service.card import utc_now
from lus.errors import LusError, NotFound, NotReady, Overloaded, PermissionDenied

logger = logging.getLogger(__name__)

T = TypeVar("T")

Progress = Callable[[float, str], None]
"""Told the share of the job done (0 to 1) and what it is doing."""
JobBody = Callable[[str, Progress], T]
"""The work of a job: gets its job id and a progress callback, returns the result."""


class JobState(Enum):
    QUEUED = "queued"
    RUNNING = "running"
    SUCCEEDED = "succeeded"
    FAILED = "failed"


FINISHED = frozenset({JobState.SUCCEEDED, JobState.FAILED})


@dataclass(frozen=True)
class TrainingLimits:
    """How much training one replica takes on.

    Attributes:
        workers: Jobs fitted at the same time; 0 switches training off on this replica.
        queue: Jobs that may wait behind the running ones; more are refused (RESOURCE_EXHAUSTED).
        keep_s: Seconds a finished job stays readable.
        keep_jobs: Finished jobs kept at most (the oldest are forgotten first).
        idle_s: Seconds with no job queued or running before ``on_idle`` is called (to stop
            the fitting process, which holds scikit-learn in memory).
        per_team: Jobs one team may have queued or running (``LUS_EXPERT_TRAINING_JOBS_PER_
            TEAM``), so one team cannot fill the queue.
        max_examples: Examples one request may hold (``LUS_EXPERT_TRAINING_MAX_EXAMPLES``).
        video_hash: Whether examples naming video hashes may use any stored vector, not only
            the team's own uploads (``LUS_EXPERT_TRAINING_VIDEO_HASH``).
        summary_min_patients: Patients below which published summaries are coarsened and k-NN
            refused (``LUS_EXPERT_SUMMARY_MIN_PATIENTS``).
    """

    workers: int = 1
    queue: int = 4
    keep_s: float = 3600.0
    keep_jobs: int = 256
    idle_s: float = 300.0
    per_team: int = 2
    max_examples: int = 20_000
    video_hash: bool = False
    summary_min_patients: int = 30


@dataclass(frozen=True)
class JobStatus(Generic[T]):
    """A snapshot of one job.

    Attributes:
        job_id: A random UUID.
        task: The task the job trains.
        owner: The team that submitted it; only it may read the job.
        state: Where the job is.
        progress: Share done, 0 to 1; never goes back.
        stage: What the job is doing or last did.
        error: Why it failed (FAILED only), in words a caller can act on.
        error_code: The gRPC status the failure stands for (FAILED only).
        result: What the job returned (SUCCEEDED only).
        created_at: ISO 8601 UTC times; empty until reached.
        started_at: See ``created_at``.
        finished_at: See ``created_at``.
    """

    job_id: str
    task: str
    owner: str
    state: JobState = JobState.QUEUED
    progress: float = 0.0
    stage: str = "queued"
    error: str = ""
    error_code: grpc.StatusCode | None = None
    result: T | None = None
    created_at: str = field(default_factory=utc_now)
    started_at: str = ""
    finished_at: str = ""


@dataclass
class _Job(Generic[T]):
    status: JobStatus[T]
    body: JobBody[T] | None  # dropped once finished: it holds the training data
    finished_mono: float = 0.0


class TrainingJobs(Generic[T]):
    """Runs submitted jobs on worker threads, at most ``limits.queue`` waiting.

    Args:
        limits: Workers, queue bound and how long finished jobs are kept.
        on_idle: Called (from a worker thread) once nothing has been queued or running for
            ``limits.idle_s`` seconds.
        clock: Monotonic seconds, for expiring finished jobs.
    """

    def __init__(
        self,
        limits: TrainingLimits,
        *,
        on_idle: Callable[[], None] | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._limits = limits
        self._on_idle = on_idle
        self._clock = clock
        self._lock = threading.Lock()
        self._jobs: OrderedDict[str, _Job[T]] = OrderedDict()
        self._pending: queue.Queue[str | None] = queue.Queue()
        self._threads: list[threading.Thread] = []
        self._closed = False

    @property
    def limits(self) -> TrainingLimits:
        return self._limits

    def submit(self, task: str, owner: str, body: JobBody[T]) -> JobStatus[T]:
        """Queue ``body`` as a new job and return its status (QUEUED).

        Raises:
            Overloaded: ``limits.workers + limits.queue`` jobs are already running or waiting,
                or ``limits.per_team`` of ``owner``'s.
            NotReady: The manager is closed, or has no workers.
        """
        with self._lock:
            self._check_room(owner)
            status: JobStatus[T] = JobStatus(job_id=str(uuid.uuid4()), task=task, owner=owner)
            self._jobs[status.job_id] = _Job(status, body)
            self._start_workers()
        self._pending.put(status.job_id)
        return status

    def check_room(self, owner: str) -> None:
        """Raise as ``submit`` would now (``Overloaded``, ``NotReady``): a cheap check to make
        before the work of building a job."""
        with self._lock:
            self._check_room(owner)

    def _check_room(self, owner: str) -> None:
        if self._closed or self._limits.workers < 1:
            raise NotReady("this replica takes no training jobs now; try another replica")
        self._expire()
        unfinished = [j.status.owner for j in self._jobs.values() if j.status.state not in FINISHED]
        if len(unfinished) >= self._limits.workers + self._limits.queue:
            raise Overloaded(
                f"this replica's training queue is full ({len(unfinished)} jobs running or "
                "waiting); retry when one has finished"
            )
        mine = unfinished.count(owner)
        if mine >= self._limits.per_team:
            raise Overloaded(
                f"team {owner!r} has {mine} training jobs queued or running here, its limit "
                "(setting LUS_EXPERT_TRAINING_JOBS_PER_TEAM); retry when one has finished"
            )

    def get(self, job_id: str, owner: str) -> JobStatus[T]:
        """The job's current status.

        Raises:
            NotFound: No such job here (never submitted to this replica, or expired).
            PermissionDenied: The job belongs to another team.
        """
        with self._lock:
            self._expire()
            job = self._jobs.get(job_id)
            if job is None:
                raise NotFound(
                    f"no training job {job_id!r} on this replica: jobs live on the replica "
                    f"that took them and are kept {self._limits.keep_s:.0f} s after finishing"
                )
            if job.status.owner != owner:
                raise PermissionDenied(
                    f"training job {job_id!r} belongs to team {job.status.owner!r}"
                )
            return job.status

    def close(self) -> None:
        """Take no more jobs, fail the queued ones and let workers stop after their current job."""
        with self._lock:
            self._closed = True
            for job in self._jobs.values():
                if job.status.state is JobState.QUEUED:
                    self._fail(job, NotReady("the replica shut down before the job ran"))
            threads = len(self._threads)
        for _ in range(threads):
            self._pending.put(None)

    def _start_workers(self) -> None:
        # Started on the first job, so a replica that never trains runs no extra threads.
        while len(self._threads) < self._limits.workers:
            thread = threading.Thread(
                target=self._work, name=f"lus-training-{len(self._threads)}", daemon=True
            )
            self._threads.append(thread)
            thread.start()

    def _work(self) -> None:
        while True:
            try:
                job_id = self._pending.get(timeout=self._limits.idle_s)
            except queue.Empty:
                self._idle()
                job_id = self._pending.get()
            if job_id is None:
                return
            self._run(job_id)

    def _idle(self) -> None:
        with self._lock:
            busy = any(j.status.state not in FINISHED for j in self._jobs.values())
        if busy or self._on_idle is None:
            return
        try:
            self._on_idle()
        except Exception:
            logger.exception("training idle hook failed")

    def _run(self, job_id: str) -> None:
        with self._lock:
            job = self._jobs.get(job_id)
            if job is None or job.body is None or job.status.state is not JobState.QUEUED:
                return  # failed by close() while waiting
            body = job.body
            job.status = replace(
                job.status, state=JobState.RUNNING, stage="starting", started_at=utc_now()
            )
        logger.info("training job %s for %s started", job_id, job.status.task)
        try:
            result = body(job_id, lambda f, s: self._progress(job_id, f, s))
        except LusError as err:
            logger.info("training job %s failed: %s", job_id, err)
            with self._lock:
                self._fail(job, err)
            return
        except Exception:
            logger.exception("training job %s failed unexpectedly", job_id)
            with self._lock:
                self._fail(job, None)
            return
        with self._lock:
            self._succeed(job, result)
        logger.info("training job %s succeeded", job_id)

    def _progress(self, job_id: str, fraction: float, stage: str) -> None:
        with self._lock:
            job = self._jobs.get(job_id)
            if job is None or job.status.state is not JobState.RUNNING:
                return  # a late message from a finished job
            progress = max(job.status.progress, min(max(fraction, 0.0), 1.0))
            job.status = replace(job.status, progress=progress, stage=stage)

    def _succeed(self, job: _Job[T], result: T) -> None:
        job.finished_mono = self._clock()
        job.body = None
        job.status = replace(
            job.status,
            state=JobState.SUCCEEDED,
            progress=1.0,
            stage="done",
            result=result,
            finished_at=utc_now(),
        )

    def _fail(self, job: _Job[T], error: LusError | None) -> None:
        """Mark ``job`` failed; ``None`` stands for an unexpected error (details in the log)."""
        job.finished_mono = self._clock()
        job.body = None
        job.status = replace(
            job.status,
            state=JobState.FAILED,
            stage="failed",
            error=str(error) if error else "internal error while training; see server logs",
            error_code=error.code if error else grpc.StatusCode.INTERNAL,
            finished_at=utc_now(),
        )

    def _expire(self) -> None:
        """Forget finished jobs past ``keep_s``, and the oldest beyond ``keep_jobs``."""
        finished = [j for j in self._jobs.values() if j.status.state in FINISHED]
        cutoff = self._clock() - self._limits.keep_s
        stale = {j.status.job_id for j in finished if j.finished_mono < cutoff}
        finished.sort(key=lambda j: j.finished_mono)
        excess = len(finished) - len(stale) - self._limits.keep_jobs
        if excess > 0:
            fresh = [j for j in finished if j.status.job_id not in stale]
            stale.update(j.status.job_id for j in fresh[:excess])
        for job_id in stale:
            del self._jobs[job_id]
