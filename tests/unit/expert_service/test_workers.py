"""WorkerPool's restart policy: a worker that crashes soon after starting backs off; one that
ran well is restarted at once. Processes and the clock are fakes; the real processes are
exercised in tests/integration/expert_service/test_processes.py."""

from __future__ import annotations

import itertools
import json
import os
import subprocess
import sys
from types import SimpleNamespace
from typing import Any, ClassVar

import pytest

from expert_service import workers
from expert_service.settings import ExpertSettings


class DeadOnArrival:
    """A process that has exited by the time anyone looks."""

    started: ClassVar[list[float]] = []
    pids = itertools.count(100)

    def __init__(self, **_: Any) -> None:
        self.pid = next(self.pids)
        self.exitcode = 1

    def start(self) -> None:
        DeadOnArrival.started.append(clock.now)

    def is_alive(self) -> bool:
        return False


clock = SimpleNamespace(now=0.0)


def _never_run(settings: ExpertSettings, parent_pid: int, index: int) -> None:
    """The pool's worker entry point; the fake processes never call it."""


def test_crash_loop_backs_off_and_a_long_run_restarts_at_once(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Any
) -> None:
    monkeypatch.setattr(workers.time, "monotonic", lambda: clock.now)
    settings = ExpertSettings(port=0, registry_dir=tmp_path)
    pool = workers.WorkerPool(settings, port=5000, count=1, target=_never_run)
    pool._context = SimpleNamespace(Process=DeadOnArrival)  # type: ignore[assignment]
    DeadOnArrival.started.clear()

    for clock.now in (0.0, 0.5, 0.9, 1.6, 2.0, 3.9, 4.1, 40.0):
        pool.start()
    # 0: first start. Dead at 0.5 after 0.5 s -> wait 1 s (restart at 1.6). Dead at 2.0 after
    # 0.4 s -> wait 2 s (4.0; 3.9 is too early, 4.1 starts). Dead at 40 after 36 s -> at once.
    assert DeadOnArrival.started == [0.0, 1.6, 4.1, 40.0]


def test_workers_get_no_admin_tokens_and_their_own_metrics_ports(tmp_path: Any) -> None:
    settings = ExpertSettings(
        port=0, registry_dir=tmp_path, admin_tokens={"radiology": "secret"}, metrics_port=9102
    )
    pool = workers.WorkerPool(settings, port=5000, count=2, target=_never_run)
    first, second = (pool._worker_settings(i) for i in range(2))
    assert (first.port, first.processes, first.admin_tokens) == (5000, 1, {})
    assert (first.metrics_port, second.metrics_port) == (9103, 9104)


def test_pinning_puts_every_thread_on_one_allowed_cpu() -> None:
    # In a child process: pinning this one would pin the rest of the test session.
    script = (
        "import json, os, threading, time\n"
        "from expert_service.workers import pin_to_cpu\n"
        "threading.Thread(target=time.sleep, args=(2,), daemon=True).start()\n"
        "cpu = pin_to_cpu(1)\n"
        "tasks = os.listdir('/proc/self/task')\n"
        "masks = sorted({tuple(sorted(os.sched_getaffinity(int(t)))) for t in tasks})\n"
        "print(json.dumps({'cpu': cpu, 'masks': masks, 'threads': len(tasks)}))\n"
    )
    run = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, check=True)
    seen = json.loads(run.stdout)
    cpu = sorted(os.sched_getaffinity(0))[1 % len(os.sched_getaffinity(0))]
    assert seen["cpu"] == cpu
    assert seen["threads"] >= 2  # the thread started before pinning is pinned too
    assert seen["masks"] == [[cpu]]


def test_the_pool_is_given_its_entry_point_and_never_imports_the_server() -> None:
    grimp = pytest.importorskip("grimp")  # import-linter's graph builder (the dev extra)
    graph = grimp.build_graph("expert_service", cache_dir=None)
    # Function-local imports count: the server composes the tier and only __main__ runs it.
    importers = graph.find_modules_that_directly_import("expert_service.server")
    assert importers == {"expert_service.__main__"}
    assert not graph.chain_exists(
        importer="expert_service.workers", imported="expert_service.server"
    )
