"""Server processes for multi-replica tests: ``python -m <tier>`` with ports read from its log."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import threading
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]

EXPERT_PORTS = r"listening on \S+:(?P<grpc>\d+) \(admin on port (?P<admin>\d+)\)"
BIOMARKER_PORT = r"biomarker service on port (?P<grpc>\d+)"
BIOMARKER_METRICS_PORT = r"metrics port (?P<metrics>\d+)"
LOCAL_STACK_PORTS = (
    r"serving: biomarker \S+:(?P<biomarker>\d+), expert \S+:(?P<grpc>\d+) \(admin (?P<admin>\d+)\)"
)
"""``lus serve``: both tiers in one process."""


@dataclass
class ServerProcess:
    proc: subprocess.Popen[str]
    ports: dict[str, int]
    log: list[str] = field(default_factory=list)


@contextmanager
def server_process(
    module: str, env: dict[str, str], *patterns: str, args: Sequence[str] = ()
) -> Iterator[ServerProcess]:
    """Start ``python -m module *args`` (servers bind port 0) and read the ports it logs.

    Each pattern's named groups become ``ports`` entries; start-up waits until all are seen.
    Stops the process with SIGTERM (graceful drain), or SIGKILL if it does not exit.
    """
    proc = subprocess.Popen(
        [sys.executable, "-m", module, *args],
        cwd=REPO,
        env={**os.environ, **env},
        stderr=subprocess.PIPE,
        text=True,
    )
    assert proc.stderr is not None
    wanted = {name for p in patterns for name in re.compile(p).groupindex}
    found: dict[str, int] = {}
    log: list[str] = []
    for line in proc.stderr:
        log.append(line)
        for pattern in patterns:
            if match := re.search(pattern, line):
                found.update({k: int(v) for k, v in match.groupdict().items()})
        if set(found) >= wanted:
            break
    drain = threading.Thread(target=lambda: log.extend(proc.stderr or ()), daemon=True)
    drain.start()  # keep the pipe empty so the server never blocks on logging
    try:
        assert set(found) >= wanted, f"{module} exited before listening:\n" + "".join(log)
        yield ServerProcess(proc, found, log)
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        drain.join(timeout=5)
        proc.stderr.close()
