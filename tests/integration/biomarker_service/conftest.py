"""Fixtures of the biomarker-tier integration tests: one tiny untrained artifact for all."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.fakes import SMALL_SPEC, TEST_ARTIFACT_VERSION, untrained_artifact


@pytest.fixture(scope="session")
def artifact(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """An untrained width-8 TSM ResNet-18 for ``SMALL_SPEC``; tests must not modify it."""
    path = tmp_path_factory.mktemp("artifact") / "model.safetensors"
    return untrained_artifact(path, spec=SMALL_SPEC, version=TEST_ARTIFACT_VERSION)
