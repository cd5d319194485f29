"""``lus promote`` and what ``lus train expert`` says about whether a new version answers."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from expert_service.card import ExpertCard, ExpertDraft, Lineage
from expert_service.registry import LocalRegistry
from lus_cli import cli
from lus_cli.commands import live_line
from tests.fakes import logistic_fit

N = 6


def _register(registry: LocalRegistry, seed: int, *, three: bool = False) -> ExpertCard:
    def rule(x: np.ndarray) -> np.ndarray:
        if three:
            return np.where(x[:, 0] > 0.6, "covid", np.where(x[:, 1] > 0.5, "ards", "healthy"))
        return np.where(x[:, 0] > x[:, 1], "covid", "healthy")

    onnx, _, y = logistic_fit(seed, N, rule=rule)
    draft = ExpertDraft(
        "covid",
        onnx,
        schema_id="s@1",
        classes=tuple(sorted({str(c) for c in y})),
        n_features=N,
        model_family="logreg",
        lineage=Lineage(biomarker_models=("m1",)),
        allow_class_change=three,
    )
    return registry.register(draft, owner="local")


def test_a_new_version_answers_at_once_unless_its_class_set_changed(tmp_path: Path) -> None:
    registry = LocalRegistry(tmp_path)
    first = _register(registry, 0)
    line = live_line(first, registry.task_state("covid"), tmp_path)
    assert line.startswith("covid v1 answers now: this local registry serves a task's newest")
    changed = _register(registry, 1, three=True)
    line = live_line(changed, registry.task_state("covid"), tmp_path)
    assert line.startswith("covid v2 does not answer yet: production stays v1.")
    assert f"lus promote --task covid --version 2 --registry {tmp_path}" in line


def test_lus_promote_moves_the_alias_of_a_local_registry(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    registry = LocalRegistry(tmp_path)
    _register(registry, 0)
    _register(registry, 1, three=True)
    promote = ["promote", "--task", "covid", "--registry", str(tmp_path), "--version"]
    assert cli.main([*promote, "2"]) == 0
    assert capsys.readouterr().out.strip() == "covid: production -> v2 (was v1)"
    assert registry.task_state("covid").live_version() == 2
    assert cli.main([*promote, "9"]) == 2  # a refusal: one line on stderr, exit code 2
    assert "has no version 9" in capsys.readouterr().err
