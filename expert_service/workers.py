"""More processes serving ExpertService on the same port, so one replica uses all its cores.

A Python process answers predictions on about one core: every call holds the GIL. gRPC opens
its listening sockets with SO_REUSEPORT on Linux, so several processes can listen on one port
and the kernel spreads client connections across them (a connection stays with its process;
clients with one channel stay on one process). The main process serves the admin port too and
runs a ``WorkerPool`` of the others: each loads experts and follows the registry on its own,
exactly like a replica; a worker that dies is started again; on shutdown each drains.

The pool is given the workers' entry point (``expert_service.server.run_worker``) rather than
importing the server, so the server imports this module and not the other way round.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import multiprocessing
import os
import time
from collections.abc import Callable
from multiprocessing.process import BaseProcess
from pathlib import Path

from expert_service.auth import scrub_secret_environment
from expert_service.settings import ExpertSettings
from lus.rpc.lifecycle import RunningServer, wait_for_signal

logger = logging.getLogger(__name__)

PARENT_POLL_S = 1.0
"""How often a worker checks that the main process is still alive (it exits when orphaned)."""
HEALTHY_RUN_S = 30.0
"""A worker that lived this long before dying is restarted at once; one that died sooner
(a crash loop, e.g. settings it cannot use) waits 1 s, then twice as long each time, up to
``MAX_RESTART_DELAY_S``."""
MAX_RESTART_DELAY_S = 60.0

WorkerMain = Callable[[ExpertSettings, int, int], None]
"""A worker process's entry point: ``(settings, parent pid, index)``, index 1, 2, ... It must
be a module-level function: the worker is spawned, so it travels by qualified name."""


class WorkerPool:
    """``count`` worker processes serving ExpertService on ``port`` beside the main process.

    A ``lus.rpc.lifecycle.RunningServer`` once started, so ``main()`` stops it with the main
    process's own servers.

    Args:
        settings: The main process's settings; workers get them without admin tokens.
        port: The bound public port (resolved, so ``port=0`` settings work too).
        count: Worker processes besides the main one.
        target: What each worker process runs (``expert_service.server.run_worker``).
    """

    def __init__(
        self, settings: ExpertSettings, port: int, count: int, *, target: WorkerMain
    ) -> None:
        self._port = port
        self._target = target
        self._settings = settings.model_copy(
            update={"port": port, "processes": 1, "admin_tokens": {}, "admin_tokens_file": None}
        )
        self._context = multiprocessing.get_context("spawn")  # no inherited gRPC/thread state
        self._workers: list[BaseProcess | None] = [None] * count
        self._started = [0.0] * count
        self._delay = [0.0] * count
        self._restart_at: list[float | None] = [None] * count
        self._stopping = False

    @property
    def port(self) -> int:
        """The public port the workers serve, shared with the main process."""
        return self._port

    def start(self) -> None:
        """Start every worker, or restart the ones that died (backing off a crash loop)."""
        now = time.monotonic()
        for index, worker in enumerate(self._workers):
            if self._stopping or (worker is not None and worker.is_alive()):
                continue
            if worker is not None:
                restart_at = self._restart_at[index]
                if restart_at is None:  # found dead just now
                    restart_at = self._schedule_restart(index, worker, now)
                if now < restart_at:
                    continue
            self._restart_at[index] = None
            self._started[index] = now
            scrub_secret_environment()  # a spawned worker starts with this environment
            fresh = self._context.Process(
                target=self._target,
                args=(self._worker_settings(index), os.getpid(), index + 1),
                name=f"expert-worker-{index}",
                daemon=False,  # a daemon process may not start its own children (none here)
            )
            fresh.start()
            self._workers[index] = fresh

    def _schedule_restart(self, index: int, worker: BaseProcess, now: float) -> float:
        lived = now - self._started[index]
        previous = self._delay[index]
        delay = 0.0 if lived >= HEALTHY_RUN_S else min(max(2 * previous, 1.0), MAX_RESTART_DELAY_S)
        self._delay[index] = delay
        self._restart_at[index] = now + delay
        logger.error(
            "expert worker %d (pid %s) exited with %s after %.0f s; starting it again in %.0f s",
            index,
            worker.pid,
            worker.exitcode,
            lived,
            delay,
        )
        return now + delay

    def _worker_settings(self, index: int) -> ExpertSettings:
        # Each process has its own metrics (no shared registry across processes): worker i
        # serves them on the main process's metrics port + 1 + i.
        base = self._settings.metrics_port
        if not base:
            return self._settings
        return self._settings.model_copy(update={"metrics_port": base + 1 + index})

    async def supervise(self, interval_s: float = 1.0) -> None:
        """Restart dead workers until ``stop``; run it as a task."""
        while not self._stopping:
            await asyncio.sleep(interval_s)
            self.start()

    async def stop(self, grace_s: float) -> None:
        """SIGTERM every worker (each drains within ``grace_s``); kill the ones still alive."""
        self._stopping = True
        live = [w for w in self._workers if w is not None and w.is_alive()]
        for worker in live:
            worker.terminate()  # SIGTERM: the worker reports NOT_SERVING and drains
        for worker in live:
            await asyncio.to_thread(worker.join, grace_s + 5.0)
            if worker.is_alive():
                logger.error("expert worker pid %s did not stop in time; killing it", worker.pid)
                worker.kill()
                await asyncio.to_thread(worker.join, 5.0)


def pin_to_cpu(index: int) -> int:
    """Pin every thread of this process (and the threads it starts later) to one allowed CPU.

    Process ``index`` gets the ``index``-th CPU of those it may run on, round robin; returns it.
    """
    allowed = sorted(os.sched_getaffinity(0))
    cpu = allowed[index % len(allowed)]
    for task in Path("/proc/self/task").iterdir():  # threads gRPC or numpy may have started
        with contextlib.suppress(ProcessLookupError):
            os.sched_setaffinity(int(task.name), {cpu})
    return cpu


async def serve_until_stopped(server: RunningServer, parent_pid: int, grace_s: float) -> None:
    """A worker's life after its start: serve until SIGTERM or SIGINT (Ctrl-C reaches the whole
    process group), or until the main process ``parent_pid`` is gone; then drain and stop."""
    signalled = asyncio.create_task(wait_for_signal())
    while not signalled.done() and os.getppid() == parent_pid:  # orphaned: the main one is gone
        await asyncio.wait({signalled}, timeout=PARENT_POLL_S)
    signalled.cancel()
    await server.stop(grace_s)
