"""Real servers for the gateway tests: both tiers (``lus serve`` with a tiny untrained model and
one expert), the gateway as a child process, Orthanc and dcmtk's ``storescu``."""

from __future__ import annotations

import shutil
import sqlite3
import subprocess
import time
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.integration.dicom_gateway.orthanc import ORTHANC_AE, WAIT_S, Orthanc
from tests.processes import LOCAL_STACK_PORTS, ServerProcess, free_port, server_process

SERVED = "gateway-test"
"""The untrained artifact's version: the biomarker model every report names."""
TASK = "toy_task"
GATEWAY_AE = "LUSGW"
GATEWAY_PORTS = r"dicom gateway \S+ on port (?P<dicom>\d+) .*health port (?P<health>\d+)"


@dataclass(frozen=True)
class Tiers:
    biomarker: str
    expert: str


@pytest.fixture(scope="session")
def tiers(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Tiers]:
    """``lus serve``: the biomarker tier (untrained TSM, 4 frames x 32 px x 2 clips) and the
    expert tier with one logistic-regression expert, ``toy_task``, fit on random vectors."""
    from lus.video import InputSpec
    from tests.fakes import register_threshold_expert, untrained_artifact

    root = tmp_path_factory.mktemp("tiers")
    spec = InputSpec(frames_per_clip=4, size=32, clips=2)
    artifact = untrained_artifact(root / "model.safetensors", spec=spec, version=SERVED, width=4)
    register_threshold_expert(root / "registry", TASK, SERVED)
    args = ["serve", "--artifact", str(artifact), "--registry", str(root / "registry")]
    args += ["--biomarker-port", "0", "--expert-port", "0", "--expert-admin-port", "0"]
    env = {"LUS_BIOMARKER_STORE_PATH": str(root / "features.sqlite")}
    with server_process("lus_cli", env, LOCAL_STACK_PORTS, args=args) as stack:
        yield Tiers(f"127.0.0.1:{stack.ports['biomarker']}", f"127.0.0.1:{stack.ports['grpc']}")


GatewayFactory = Callable[..., AbstractContextManager[ServerProcess]]


@pytest.fixture
def gateway_env(tmp_path: Path, tiers: Tiers) -> dict[str, str]:
    """The gateway's settings for a test: its own outbox, fast retries, a fixed free port (so
    that Orthanc's configuration can name it and a restarted gateway keeps it)."""
    return {
        "LUS_GATEWAY_PORT": str(free_port()),
        "LUS_GATEWAY_HEALTH_PORT": "0",
        "LUS_GATEWAY_METRICS_PORT": "0",
        "LUS_GATEWAY_AE_TITLE": GATEWAY_AE,
        "LUS_GATEWAY_ALLOWED_CALLING_AES": f'["{ORTHANC_AE}", "TESTSCU"]',
        "LUS_GATEWAY_BIOMARKER_ADDRESS": tiers.biomarker,
        "LUS_GATEWAY_EXPERT_ADDRESS": tiers.expert,
        "LUS_GATEWAY_TASKS": f'["{TASK}"]',
        "LUS_GATEWAY_OUTBOX_PATH": str(tmp_path / "outbox.sqlite"),
        "LUS_GATEWAY_RETRY_INITIAL_S": "0.2",
        "LUS_GATEWAY_RETRY_MAX_S": "1.0",
        "LUS_GATEWAY_DESTINATION_AE_TITLE": ORTHANC_AE,
        "LUS_GATEWAY_GRACE_S": "5",
    }


@pytest.fixture
def start_gateway(gateway_env: dict[str, str]) -> GatewayFactory:
    """``start_gateway(destination_port=...)``: the gateway as a child process."""

    @contextmanager
    def start(*, destination_port: int, **extra: str) -> Iterator[ServerProcess]:
        env = {**gateway_env, "LUS_GATEWAY_DESTINATION_PORT": str(destination_port)}
        env.update({f"LUS_GATEWAY_{k.upper()}": v for k, v in extra.items()})
        with server_process("dicom_gateway", env, GATEWAY_PORTS) as gateway:
            yield gateway

    return start


@pytest.fixture
def orthanc(tmp_path: Path, gateway_env: dict[str, str]) -> Iterator[Orthanc]:
    """A running Orthanc that forwards ultrasound instances to the test's gateway."""
    server = Orthanc(tmp_path / "orthanc", GATEWAY_AE, int(gateway_env["LUS_GATEWAY_PORT"]))
    server.folder.mkdir()
    server.start()
    try:
        yield server
    finally:
        server.stop()


def storescu(port: int, *files: Path, called_ae: str = ORTHANC_AE) -> None:
    """Push ``files`` with dcmtk's storescu (skips the test when dcmtk is missing)."""
    binary = shutil.which("storescu")
    if binary is None:
        pytest.skip("dcmtk is not installed (.ci/run installs it)")
    command = [binary, "-aet", "TESTSCU", "-aec", called_ae, "127.0.0.1", str(port)]
    subprocess.run([*command, *map(str, files)], check=True, capture_output=True, timeout=60)


def outbox_states(path: Path) -> dict[str, int]:
    """The gateway's outbox by state, read beside it (SQLite WAL allows a second reader)."""
    if not path.exists():
        return {}
    with sqlite3.connect(f"file:{path}?mode=ro", uri=True) as db:
        try:
            rows = db.execute("SELECT state, count(*) FROM jobs GROUP BY state").fetchall()
        except sqlite3.OperationalError:  # the gateway has not made its table yet
            return {}
    return {str(state): int(count) for state, count in rows}


def send_attempts(path: Path) -> int:
    """Failed sends (or analyses) so far, over every job of the outbox."""
    with sqlite3.connect(f"file:{path}?mode=ro", uri=True) as db:
        return int(db.execute("SELECT coalesce(sum(attempts), 0) FROM jobs").fetchone()[0])


def wait_until(condition: Callable[[], bool], what: str) -> None:
    """Poll ``condition`` until true (a bound on hanging, not a timing assertion)."""
    deadline = time.monotonic() + WAIT_S
    while time.monotonic() < deadline:
        if condition():
            return
        time.sleep(0.2)
    raise AssertionError(f"timed out waiting for {what}")
