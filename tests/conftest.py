"""Suite-wide fixtures: a clean LUS_* environment and the shared data folder when present."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

POCUS_DIR = Path(__file__).resolve().parents[2] / "shared" / "data" / "pocus"

AUDIT_VARIABLES = ("LUS_BIOMARKER_AUDIT_PATH", "LUS_EXPERT_AUDIT_PATH")
"""Every server a test starts (in process or as a child process) audits into a temporary file,
never into ``./lus-audit.jsonl`` of the checkout."""


@pytest.fixture(scope="session", autouse=True)
def _audit_into_a_temporary_file(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    path = tmp_path_factory.mktemp("audit") / "lus-audit.jsonl"
    with pytest.MonkeyPatch.context() as patch:  # session-wide, for module-scoped servers too
        for name in AUDIT_VARIABLES:
            patch.setenv(name, str(path))
        yield path


@pytest.fixture(autouse=True)
def _clean_lus_environment(
    monkeypatch: pytest.MonkeyPatch, _audit_into_a_temporary_file: Path
) -> None:
    for name in list(os.environ):
        if name.startswith("LUS_"):
            monkeypatch.delenv(name)
    for name in AUDIT_VARIABLES:
        monkeypatch.setenv(name, str(_audit_into_a_temporary_file))


@pytest.fixture(scope="session")
def pocus_dir() -> Path:
    if not (POCUS_DIR / "manifest.csv").exists():
        pytest.skip("../shared/data/pocus is not present")
    return POCUS_DIR
