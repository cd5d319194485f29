"""What importing the lean entry points loads, in a fresh interpreter (issue 14).

The expert image (deploy/docker/expert.Dockerfile) installs the core dependencies only and holds
no ``biomarker_service/``, ``trainer/`` or ``lus_cli/``; a PACS integration installs ``lus`` and
its clients and no tier. Importing their modules must load none of the heavy stacks and none of
the packages above them. The static counterpart is the import contract in pyproject.toml
(tests/unit/test_import_contract.py); this checks what really gets imported at run time.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]

HEAVY = ("torch", "sklearn", "av", "scipy", "pydicom")
"""Not installed where the expert tier or a client runs."""

TRAINING = ("skl2onnx", "onnx", "safetensors", "matplotlib")
"""The training/export stack: in the `train` and `biomarker` extras, not in the core."""

EXPERT_ABSENT = (*HEAVY, *TRAINING, "trainer", "biomarker_service", "lus_cli")
REPLICA_ABSENT = (*HEAVY, *TRAINING, "biomarker_service", "lus_cli")
"""The training replica's serving process (deploy/docker/expert-train.Dockerfile): scikit-learn
and the rest load in its fitting worker only; its image has no biomarker_service/ or lus_cli/."""
CLIENT_ABSENT = (*HEAVY, *TRAINING, "trainer", "biomarker_service", "expert_service", "lus_cli")

CLIENT_MODULES = ["lus.clients"] + [
    f"lus.clients.{path.stem}"
    for path in sorted((REPO / "lus" / "clients").glob("*.py"))
    if path.stem != "__init__"
]


def _loaded_after_import(module: str, candidates: tuple[str, ...]) -> list[str]:
    """Which of `candidates` (top-level names) are in sys.modules after `import module`."""
    code = (
        "import json, sys\n"
        f"import {module}\n"
        f"print(json.dumps(sorted(name for name in {candidates!r} if name in sys.modules)))\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", code],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    loaded: list[str] = json.loads(result.stdout.strip().splitlines()[-1])
    return loaded


@pytest.mark.parametrize("module", ["expert_service.server", "lus.healthcheck"])
def test_expert_tier_imports_no_heavy_stack(module: str) -> None:
    assert _loaded_after_import(module, EXPERT_ABSENT) == []


def test_training_replica_serves_without_the_training_stack() -> None:
    assert _loaded_after_import("trainer.expert_replica", REPLICA_ABSENT) == []


@pytest.mark.parametrize("module", CLIENT_MODULES)
def test_clients_import_no_tier(module: str) -> None:
    assert _loaded_after_import(module, CLIENT_ABSENT) == []
