"""Server processes for multi-replica tests: ``python -m <tier>`` with ports read from its log."""

from __future__ import annotations

import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator, Sequence
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


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@contextmanager
def private_redis(
    folder: Path, *config: str
) -> Iterator[tuple[str, tuple[Callable[[], None], Callable[[], None]]]]:
    """A redis-server of the test's own on a free port, its files in ``folder``, started with
    ``config`` (e.g. ``"--appendonly", "yes"``; default: nothing kept on disk); yields its URL
    and ``(start, stop)`` to restart it. Skips the test when redis-server is not installed."""
    import pytest
    import redis

    binary = shutil.which("redis-server")
    if binary is None:
        pytest.skip("redis-server is not installed")
    port = free_port()
    args = [binary, "--port", str(port), "--bind", "127.0.0.1", "--dir", str(folder)]
    args += list(config) or ["--appendonly", "no", "--save", ""]
    url = f"redis://127.0.0.1:{port}/0"
    procs: list[subprocess.Popen[bytes]] = []

    def start() -> None:
        procs.append(subprocess.Popen(args, stdout=subprocess.DEVNULL))
        client = redis.Redis.from_url(url)
        for _ in range(500):  # a bound on waiting for it to answer, not a timing assertion
            try:
                client.ping()
                break
            except redis.RedisError:
                time.sleep(0.02)
        client.close()

    def stop() -> None:
        procs[-1].send_signal(signal.SIGTERM)
        procs[-1].wait(timeout=10)

    start()
    try:
        yield url, (start, stop)
    finally:
        for proc in procs:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
