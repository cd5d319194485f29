"""Fits experts in a separate worker process and relays its progress back to the job.

What fits is not this package's business: ``ProcessFitter`` runs a ``FitFunction`` it is given
where the server is composed (``trainer.expert_fitting.fit_in_worker``, injected by ``python -m
trainer.expert_replica`` and ``lus serve``), so the expert tier never imports the trainer.

Why a process and not a thread: on the small sets experts are fit on, scikit-learn spends much
of its time in Python-level loops (MLP epochs, AdaBoost rounds, forest bookkeeping) that hold
the GIL, so on a thread it competes with the threads answering Predict for the GIL as well as
for the CPU. A process competes only for the CPU, and at a lower priority (``os.nice``). On
2 cores, Predict p99 while a 400-vector zoo fitted was 1.4-3 ms this way against 6 ms with a
thread (0.9 ms idle), with 50-70 % more Predict calls answered. The process is also the only
place scikit-learn and skl2onnx are imported (by the fit function, when it runs), so the
serving process stays as lean as the expert image that lacks them, and a fit that runs out of
memory does not take the replica down. It is started with "spawn" (forking a process that runs
gRPC threads is unsafe; scripts that start a server need the usual ``if __name__ ==
"__main__":`` guard), kept between jobs because its imports take about a second, and stopped
once training has been idle a while.

What crosses the process boundary is this server's own data (numbers, labels, the ONNX bytes
and metrics that come back), never anything received from a caller as a pickle.
"""

from __future__ import annotations

import importlib.util
import logging
import multiprocessing
import os
import pickle
import resource
import threading
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor
from concurrent.futures import TimeoutError as FutureTimeout
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass
from typing import Any

import numpy as np

from expert_service.auth import scrub_secret_environment
from expert_service.card import TrainingSummary
from expert_service.errors import TrainingUnavailable
from expert_service.training.jobs import Progress
from lus.errors import DeadlineExpired, NotReady, Overloaded

logger = logging.getLogger(__name__)

TRAINING_PACKAGES = {"sklearn": "scikit-learn", "skl2onnx": "skl2onnx", "onnx": "onnx"}
"""Modules fitting needs (the ``train`` extra) -> their package names."""


def check_training_installed() -> None:
    """Raise ``TrainingUnavailable`` naming what is missing when the ``train`` extra is absent."""
    missing = [
        pkg for mod, pkg in TRAINING_PACKAGES.items() if importlib.util.find_spec(mod) is None
    ]
    if missing:
        raise TrainingUnavailable(
            f"this replica cannot fit experts: {', '.join(missing)} not installed (the `train` "
            "extra, pip install 'lus-serving[train]'); send TrainExpert to a replica that has it"
        )


@dataclass(frozen=True)
class FitRequest:
    """What the worker process fits: checked vectors, labels and patient ids, one per row."""

    vectors: np.ndarray
    labels: tuple[str, ...]
    patients: tuple[str, ...]
    family: str
    seed: int


@dataclass(frozen=True)
class FitOutcome:
    """A fitted expert as the registry takes it, less what the request already says (task,
    schema, card texts); the fitted scikit-learn model itself stays in the worker."""

    onnx_bytes: bytes
    classes: tuple[str, ...]
    metrics: dict[str, float]
    model_family: str
    n_features: int
    summary: TrainingSummary | None


FitFunction = Callable[[FitRequest, Progress], FitOutcome]
"""Fits one request in the worker process, telling ``progress`` (share done, 0 to 1; stage) as
it goes; raises ``lus.errors.InvalidInput`` for a set it cannot fit.

The worker is spawned, so the function travels to it by qualified name: it must be a
module-level function, and its module must not import scikit-learn when imported (the serving
process imports it to hand it over); the function imports what it needs when it runs.
"""


WORKER_NICENESS = 10
"""Added to the worker process's niceness: fitting yields the CPU to the serving threads."""

FLUSH_TIMEOUT_S = 5.0
"""Longest wait, after a fit's result, for its last progress messages to arrive."""

_progress_queue: Any = None
"""In the worker process: where progress messages ``(job_id, fraction, stage)`` go."""


def _start_worker(progress_queue: Any, memory_bytes: int | None) -> None:
    """Initializer of each worker process: lower its priority, cap its address space (a fit
    that needs more fails with MemoryError, or the process dies; the replica stays up), keep
    the progress queue."""
    global _progress_queue  # noqa: PLW0603 - one per worker process, set once at its start
    _progress_queue = progress_queue
    os.nice(WORKER_NICENESS)
    if memory_bytes is not None:
        resource.setrlimit(resource.RLIMIT_AS, (memory_bytes, memory_bytes))


def _fit_in_worker(fit: FitFunction, job_id: str, request: FitRequest) -> FitOutcome:
    def report(fraction: float, stage: str) -> None:
        _progress_queue.put((job_id, fraction, stage))

    try:
        return fit(request, report)
    finally:
        # Progress travels apart from the result: this marker lets the parent wait for the
        # last messages, so none arrives after the job has moved on.
        _progress_queue.put((job_id, None, ""))


class ProcessFitter:
    """Fits with ``fit`` in a worker process started on first use and stopped by ``release()``.

    Args:
        fit: What fits a request, in the worker process (see ``FitFunction``).
        processes: Worker processes, i.e. fits that may run at once.
        timeout_s: Longest fit; past it the worker processes are killed and the fit fails
            with ``DeadlineExpired`` (None: no limit).
        memory_bytes: Address-space limit (RLIMIT_AS) of each worker process (None: none).

    The worker processes are spawned with bearer tokens removed from the environment
    (``auth.scrub_secret_environment``): they run third-party code on callers' data.

    Raises:
        TypeError: ``fit`` cannot travel to a spawned process (a lambda, a nested function).
    """

    def __init__(
        self,
        fit: FitFunction,
        *,
        processes: int = 1,
        timeout_s: float | None = None,
        memory_bytes: int | None = None,
    ) -> None:
        try:
            pickle.dumps(fit)  # a module-level function pickles as its name: nothing runs
        except (pickle.PicklingError, AttributeError, TypeError) as err:
            raise TypeError(
                f"ProcessFitter needs a module-level fit function, got {fit!r}: {err}"
            ) from None
        self._fit = fit
        self._processes = processes
        self._timeout_s = timeout_s
        self._memory_bytes = memory_bytes
        self._lock = threading.Lock()
        self._executor: ProcessPoolExecutor | None = None
        self._queue: Any = None
        self._relay: threading.Thread | None = None
        self._listeners: dict[str, tuple[Progress, threading.Event]] = {}
        self._in_flight = 0

    def fit(self, job_id: str, request: FitRequest, progress: Progress) -> FitOutcome:
        """Fit ``request`` in the worker process, telling ``progress`` as it goes (blocking).

        Raises:
            InvalidInput: The set cannot be fitted (the fit function says why).
            NotReady: The worker process died (e.g. out of memory); the next fit starts anew.
            DeadlineExpired: The fit ran past ``timeout_s``; its process was killed.
            Overloaded: The fit ran out of its ``memory_bytes``.
        """
        flushed = threading.Event()
        with self._lock:
            executor = self._start()
            self._listeners[job_id] = (progress, flushed)
            self._in_flight += 1
        try:
            future = executor.submit(_fit_in_worker, self._fit, job_id, request)
            try:
                return future.result(timeout=self._timeout_s)
            except MemoryError:
                raise Overloaded(
                    "the fit needed more memory than its process may use (setting "
                    "LUS_EXPERT_TRAINING_MEMORY_BYTES); fit fewer examples or a smaller family"
                ) from None
            except FutureTimeout:
                self._kill(executor)
                raise DeadlineExpired(
                    f"the fit ran past {self._timeout_s:.0f} s (setting "
                    "LUS_EXPERT_TRAINING_FIT_TIMEOUT_S) and was stopped; fit fewer examples "
                    "or one family instead of the zoo"
                ) from None
            finally:
                if future.done() and not isinstance(future.exception(), BrokenProcessPool):
                    flushed.wait(FLUSH_TIMEOUT_S)
        except BrokenProcessPool:
            with self._lock:
                parts = self._detach() if self._executor is executor else None
            _shut_down(parts)
            raise NotReady(
                "the expert-fitting process stopped unexpectedly (out of memory?); "
                "submit the job again"
            ) from None
        finally:
            with self._lock:
                self._listeners.pop(job_id, None)
                self._in_flight -= 1

    def release(self) -> None:
        """Stop the worker process if no fit is running; the next fit starts a new one."""
        with self._lock:
            parts = self._detach() if self._in_flight == 0 else None
        if parts is not None:
            logger.info("stopping the idle expert-fitting process")
        _shut_down(parts)

    def _kill(self, executor: ProcessPoolExecutor) -> None:
        """Kill ``executor``'s processes (a running fit cannot be cancelled otherwise) and
        forget it; the next fit starts a new pool."""
        # ``_processes`` is CPython's own table of the pool's processes (stable since 3.2).
        for process in list(getattr(executor, "_processes", {}).values()):
            process.kill()
        with self._lock:
            parts = self._detach() if self._executor is executor else None
        _shut_down(parts)

    def _start(self) -> ProcessPoolExecutor:
        if self._executor is None:
            scrub_secret_environment()  # a spawned process starts with this environment
            context = multiprocessing.get_context("spawn")
            self._queue = context.Queue()
            self._executor = ProcessPoolExecutor(
                max_workers=self._processes,
                mp_context=context,
                initializer=_start_worker,
                initargs=(self._queue, self._memory_bytes),
            )
            self._relay = threading.Thread(
                target=self._forward, args=(self._queue,), name="lus-training-progress", daemon=True
            )
            self._relay.start()
        return self._executor

    def _detach(self) -> _Pool | None:
        """Forget the running pool (lock held); ``_shut_down`` it after releasing the lock,
        since the relay takes the lock to deliver messages."""
        if self._executor is None or self._relay is None:
            return None
        parts = _Pool(self._executor, self._queue, self._relay)
        self._executor = self._queue = self._relay = None
        return parts

    def _forward(self, progress_queue: Any) -> None:
        while (message := progress_queue.get()) is not None:
            job_id, fraction, stage = message
            with self._lock:
                listener = self._listeners.get(job_id)
            if listener is None:
                continue
            progress, flushed = listener
            if fraction is None:
                flushed.set()
            else:
                progress(float(fraction), str(stage))


@dataclass(frozen=True)
class _Pool:
    executor: ProcessPoolExecutor
    queue: Any
    relay: threading.Thread


def _shut_down(pool: _Pool | None) -> None:
    """Stop the worker process(es), then the relay once it has forwarded what was sent."""
    if pool is None:
        return
    pool.executor.shutdown(wait=True)
    pool.queue.put(None)
    pool.relay.join()
    pool.queue.close()
    pool.queue.join_thread()
