"""Suite-wide fixtures: a clean LUS_* environment and the shared data folder when present."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

POCUS_DIR = Path(__file__).resolve().parents[2] / "shared" / "data" / "pocus"


@pytest.fixture(autouse=True)
def _clean_lus_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in list(os.environ):
        if name.startswith("LUS_"):
            monkeypatch.delenv(name)


@pytest.fixture(scope="session")
def pocus_dir() -> Path:
    if not (POCUS_DIR / "manifest.csv").exists():
        pytest.skip("../shared/data/pocus is not present")
    return POCUS_DIR
