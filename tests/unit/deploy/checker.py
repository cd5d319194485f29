"""deploy/check_hardening.py loaded as a module (deploy/ is not a package)."""

from __future__ import annotations

import importlib.util
from types import ModuleType

from tests.processes import REPO


def _load() -> ModuleType:
    spec = importlib.util.spec_from_file_location(
        "check_hardening", REPO / "deploy" / "check_hardening.py"
    )
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


hardening = _load()
