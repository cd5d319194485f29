"""The import order (issue 14): `lint-imports` with the contracts in pyproject.toml.

lus_cli > trainer > biomarker_service | expert_service > lus, the two tiers independent, and the
CPU tier free of torch, video/DICOM decoding and the training stack. `make lint` runs the same
check; this test makes the suite fail too. Function-local (lazy) imports count.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
PACKAGES = ("lus_cli", "trainer", "biomarker_service", "expert_service", "dicom_gateway", "lus")


def _lint_imports(cwd: Path) -> subprocess.CompletedProcess[str]:
    """Run `lint-imports` on the pyproject.toml in `cwd` (the packages there come first)."""
    script = Path(sys.executable).with_name("lint-imports")
    if not script.exists():
        found = shutil.which("lint-imports")
        if found is None:
            pytest.fail("lint-imports not found: install the dev extra (pip install -e '.[dev]')")
        script = Path(found)
    return subprocess.run(
        [str(script), "--no-cache", "--no-logo"],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def test_import_contracts_kept() -> None:
    result = _lint_imports(REPO)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "0 broken" in result.stdout


@pytest.fixture(scope="module")
def repo_copy(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The six packages and pyproject.toml, copied; edited by the tests below."""
    root = tmp_path_factory.mktemp("repo")
    shutil.copy2(REPO / "pyproject.toml", root / "pyproject.toml")
    for package in PACKAGES:
        shutil.copytree(
            REPO / package, root / package, ignore=shutil.ignore_patterns("__pycache__", "*.pyc")
        )
    return root


@pytest.mark.parametrize(
    ("module", "line", "expected"),
    [
        ("lus/schema.py", "import trainer.manifest", "lus is not allowed to import trainer"),
        (
            "expert_service/predictor.py",
            "import biomarker_service.settings",
            "expert_service is not allowed to import biomarker_service",
        ),
        ("lus/clients/__init__.py", "import lus_cli.cli", "lus is not allowed to import lus_cli"),
        ("expert_service/card.py", "import av", "expert_service is not allowed to import av"),
    ],
)
def test_a_lazy_import_against_the_order_breaks_the_contract(
    repo_copy: Path, module: str, line: str, expected: str
) -> None:
    path = repo_copy / module
    original = path.read_text()
    # Function-local, as lazy imports are: the contract must see them too.
    path.write_text(f"{original}\n\ndef _deliberately_broken() -> None:\n    {line}\n")
    try:
        result = _lint_imports(repo_copy)
    finally:
        path.write_text(original)
    assert result.returncode == 1, result.stdout + result.stderr
    assert expected in result.stdout
    assert f"{module.removesuffix('.py').replace('/', '.').removesuffix('.__init__')} ->" in (
        result.stdout
    )
