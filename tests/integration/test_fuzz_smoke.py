"""A few hundred mutated inputs against both tiers' public RPCs, on real server processes.

The short form of ``benchmarks/soak_fuzz.py`` (corpus: ``tests/fuzz``): no server may die, every
answer must be one a caller can act on (never UNKNOWN or INTERNAL), and the patient name and ID
planted in the DICOM seeds must appear in no reply, log line or audit record.
"""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import pytest

pytest.importorskip("av")
pytest.importorskip("pydicom")
pytest.importorskip("skl2onnx")

from lus.biomarker.v1 import biomarker_service_pb2 as bpb
from tests.fuzz.cases import BIOMARKER, Case
from tests.fuzz.driver import EXPECTED, Sender, fuzz_servers, run_cases
from tests.fuzz.seeds import PHI_MARKERS, video_seeds

SEED = 1
CASES = 400
TIMEOUT_S = 30.0
"""Per call; generous, since the machine is shared (this is no timing assertion)."""


def intact_uploads() -> list[Case]:
    """Every seed video unmutated: the replies to these carry real answers, so a planted
    patient field that leaked into one would show."""
    return [
        Case(
            -i - 1,
            "biomarker",
            BIOMARKER + "Extract",
            "video",
            f"{seed.name}:intact",
            bpb.ExtractRequest(
                video=seed.data, format=bpb.VideoFormat.Value(seed.format)
            ).SerializeToString(),
        )
        for i, seed in enumerate(video_seeds())
    ]


@pytest.mark.slow
def test_mutated_inputs_get_actionable_statuses_and_leak_no_phi(tmp_path: Path) -> None:
    with fuzz_servers(tmp_path) as servers:
        sender = Sender(servers.targets)
        try:
            intact = Counter()
            for case in intact_uploads():
                status, reply, details = sender.send(case, TIMEOUT_S)
                intact[status] += 1
                assert status in EXPECTED, f"{case.mutation}: {status} {details}"
                assert not any(m.encode() in reply or m in details for m in PHI_MARKERS)
            tally, sent = run_cases(sender, SEED, CASES, threads=4, timeout_s=TIMEOUT_S)
        finally:
            sender.close()
        alive = servers.alive()
    # Read once the servers have stopped: their last log lines and audit records are written.
    leaks = servers.phi_in_logs_and_audit()
    audit_lines = sum(len(p.read_text().splitlines()) for p in servers.audit_files)

    assert alive == {"biomarker": True, "expert": True}
    assert sent == CASES
    assert intact["OK"] >= 1, intact  # the model answered at least one real upload
    assert tally.unexpected == [], "\n".join(tally.unexpected)
    assert tally.phi_leaks == [], "\n".join(tally.phi_leaks)
    assert leaks == []
    # Every public RPC of both tiers was fuzzed, DICOM included, and the calls were audited.
    rpcs = {(tier, rpc) for tier, rpc, _ in tally.calls}
    assert rpcs >= {
        ("biomarker", "Extract"),
        ("biomarker", "ExtractStream"),
        ("biomarker", "Lookup"),
        ("expert", "Predict"),
        ("expert", "PredictBatch"),
    }
    assert audit_lines >= CASES
