"""Runs fuzz cases against both tiers' real server processes and tallies what came back.

Shared by ``tests/integration/test_fuzz_smoke.py`` and ``benchmarks/soak_fuzz.py``. Requests go
as raw bytes over generic gRPC calls, so garbled protobuf reaches the servers' parsers exactly
as a hostile client would send it.
"""

from __future__ import annotations

import itertools
import json
import threading
import time
from collections import Counter
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import grpc

from tests.fuzz.cases import MODEL_VERSION, TASK, Case, case_at
from tests.fuzz.seeds import PHI_MARKERS
from tests.processes import BIOMARKER_PORT, EXPERT_PORTS, ServerProcess, server_process

EXPECTED = frozenset(
    {
        "OK",
        "INVALID_ARGUMENT",
        "NOT_FOUND",
        "FAILED_PRECONDITION",
        "RESOURCE_EXHAUSTED",
        "OUT_OF_RANGE",
        "PERMISSION_DENIED",
    }
)
"""Answers and refusals a caller can act on. PERMISSION_DENIED: the public port refuses some
requests by policy (e.g. a version no alias points to)."""
SLOW = frozenset({"DEADLINE_EXCEEDED"})
"""Not a bug by itself (the machine is shared and small); counted and reported apart."""
ADMIN_TOKEN = "fuzz-team-secret-token-0123456789"


@dataclass
class Tally:
    """Calls by (tier, rpc, status), and the first few cases of every unexpected status."""

    calls: Counter[tuple[str, str, str]] = field(default_factory=Counter)
    unexpected: list[str] = field(default_factory=list)
    phi_leaks: list[str] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def add(self, case: Case, status: str, reply: bytes, details: str) -> None:
        leaked = [m for m in PHI_MARKERS if m.encode() in reply or m in details]
        with self.lock:
            self.calls[(case.tier, case.rpc, status)] += 1
            note = (
                f"case {case.index} {case.rpc} {case.kind} {case.mutation}:"
                f" {status} {details[:160]!r}"
            )
            if status not in EXPECTED | SLOW and len(self.unexpected) < 50:
                self.unexpected.append(note)
            if leaked and len(self.phi_leaks) < 50:
                self.phi_leaks.append(note)

    def by_status(self) -> Counter[str]:
        out: Counter[str] = Counter()
        for (_, _, status), n in self.calls.items():
            out[status] += n
        return out

    def bad_calls(self) -> int:
        return sum(n for (_, _, s), n in self.calls.items() if s not in EXPECTED | SLOW)


class Sender:
    """Generic callables per method on one channel per tier; safe to share between threads."""

    def __init__(self, targets: dict[str, str]) -> None:
        options = [
            ("grpc.max_receive_message_length", 64 * 1024 * 1024),
            ("grpc.max_send_message_length", 64 * 1024 * 1024),
        ]
        self._channels = {
            tier: grpc.insecure_channel(target, options=options) for tier, target in targets.items()
        }
        self._callables: dict[tuple[str, str], Any] = {}

    def _callable(self, case: Case) -> Any:
        key = (case.tier, case.method)
        if key not in self._callables:
            channel = self._channels[case.tier]
            if isinstance(case.payload, tuple):
                self._callables[key] = channel.stream_unary(case.method)
            else:
                self._callables[key] = channel.unary_unary(case.method)
        return self._callables[key]

    def send(self, case: Case, timeout_s: float) -> tuple[str, bytes, str]:
        """(status name, reply bytes, details) of one case."""
        call = self._callable(case)
        payload = iter(case.payload) if isinstance(case.payload, tuple) else case.payload
        try:
            reply = call(payload, timeout=timeout_s)
        except grpc.RpcError as err:
            code = err.code() if isinstance(err, grpc.Call) else None
            details = (err.details() if isinstance(err, grpc.Call) else "") or ""
            return (code.name if code is not None else "UNKNOWN"), b"", details
        return "OK", bytes(reply), ""

    def close(self) -> None:
        for channel in self._channels.values():
            channel.close()


def run_cases(
    sender: Sender,
    seed: int,
    count: int,
    *,
    threads: int = 4,
    seconds: float | None = None,
    timeout_s: float = 10.0,
    mix: dict[str, int] | None = None,
) -> tuple[Tally, int]:
    """Send cases 0..count-1 of ``seed`` from ``threads`` threads; stop early after ``seconds``.

    Returns the tally and how many cases were sent.
    """
    tally = Tally()
    counter = itertools.count()
    deadline = None if seconds is None else time.monotonic() + seconds
    sent = Counter[int]()

    def work(worker: int) -> None:
        while deadline is None or time.monotonic() < deadline:
            index = next(counter)
            if index >= count:
                return
            case = case_at(seed, index, mix)
            status, reply, details = sender.send(case, timeout_s)
            tally.add(case, status, reply, details)
            sent[worker] += 1

    pool = [threading.Thread(target=work, args=(i,)) for i in range(threads)]
    for thread in pool:
        thread.start()
    for thread in pool:
        thread.join()
    return tally, sum(sent.values())


def rss_bytes(pid: int) -> int:
    """Resident set size of a process, from /proc (0 once it has gone)."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    except OSError:
        return 0
    return 0


@dataclass
class FuzzServers:
    biomarker: ServerProcess
    expert: ServerProcess
    audit_files: tuple[Path, ...]

    @property
    def targets(self) -> dict[str, str]:
        return {
            "biomarker": f"127.0.0.1:{self.biomarker.ports['grpc']}",
            "expert": f"127.0.0.1:{self.expert.ports['grpc']}",
        }

    def alive(self) -> dict[str, bool]:
        return {
            "biomarker": self.biomarker.proc.poll() is None,
            "expert": self.expert.proc.poll() is None,
        }

    def rss(self) -> dict[str, int]:
        return {
            "biomarker": rss_bytes(self.biomarker.proc.pid),
            "expert": rss_bytes(self.expert.proc.pid),
        }

    def phi_in_logs_and_audit(self) -> list[str]:
        """Where a planted patient field turned up: server logs (stderr) or audit files."""
        found = []
        texts = {
            "biomarker log": "".join(self.biomarker.log),
            "expert log": "".join(self.expert.log),
        }
        for path in self.audit_files:
            if path.exists():
                texts[path.name] = path.read_text(errors="replace")
        for where, text in texts.items():
            found += [f"{marker} in {where}" for marker in PHI_MARKERS if marker in text]
        return found


def _register_expert(admin_port: int) -> None:
    from lus.expert.v1 import expert_service_pb2 as epb
    from lus.expert.v1 import expert_service_pb2_grpc as epb_grpc
    from lus.schema import load_schema
    from tests.fakes import logistic_onnx

    schema = load_schema()
    with grpc.insecure_channel(f"127.0.0.1:{admin_port}") as channel:
        epb_grpc.ExpertAdminServiceStub(channel).RegisterExpert(
            epb.RegisterExpertRequest(
                task=TASK,
                onnx_model=logistic_onnx(0, len(schema)),
                schema_id=schema.schema_id,
                classes=["covid", "healthy"],
                n_features=len(schema),
                model_family="logreg",
                lineage=epb.Lineage(biomarker_models=[MODEL_VERSION]),
            ),
            metadata=(("authorization", f"Bearer {ADMIN_TOKEN}"),),
            timeout=60,
        )


@contextmanager
def fuzz_servers(folder: Path, *, decode_workers: int = 1) -> Iterator[FuzzServers]:
    """Both tiers as child processes (``python -m``), a tiny untrained biomarker model, one
    registered expert, SQLite feature store and JSON-lines audit files in ``folder``."""
    from lus.video import InputSpec
    from tests.fakes import untrained_artifact

    artifact = untrained_artifact(
        folder / "fuzz.safetensors",
        spec=InputSpec(frames_per_clip=4, size=32, clips=2),
        version=MODEL_VERSION,
    )
    audit = (folder / "biomarker-audit.jsonl", folder / "expert-audit.jsonl")
    with ExitStack() as stack:
        bio = stack.enter_context(
            server_process(
                "biomarker_service",
                {
                    "LUS_BIOMARKER_ARTIFACT": str(artifact),
                    "LUS_BIOMARKER_PORT": "0",
                    "LUS_BIOMARKER_DEVICE": "cpu",
                    "LUS_BIOMARKER_FEATURE_STORE": "sqlite",
                    "LUS_BIOMARKER_FEATURE_STORE_PATH": str(folder / "features.sqlite"),
                    "LUS_BIOMARKER_AUDIT_PATH": str(audit[0]),
                    "LUS_BIOMARKER_DECODE_WORKERS": str(decode_workers),
                    "LUS_BIOMARKER_LOG_LEVEL": "INFO",
                },
                BIOMARKER_PORT,
            )
        )
        expert = stack.enter_context(
            server_process(
                "expert_service",
                {
                    "LUS_EXPERT_PORT": "0",
                    "LUS_EXPERT_ADMIN_PORT": "0",
                    "LUS_EXPERT_REGISTRY_DIR": str(folder / "registry"),
                    "LUS_EXPERT_ADMIN_TOKENS": json.dumps({"fuzz": ADMIN_TOKEN}),
                    "LUS_EXPERT_AUDIT_PATH": str(audit[1]),
                    "LUS_EXPERT_FEATURE_STORE": "sqlite",
                    "LUS_EXPERT_FEATURE_STORE_PATH": str(folder / "features.sqlite"),
                    "LUS_EXPERT_LOG_LEVEL": "INFO",
                },
                EXPERT_PORTS,
            )
        )
        _register_expert(expert.ports["admin"])
        yield FuzzServers(bio, expert, audit)
