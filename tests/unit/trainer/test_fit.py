"""The training loop: fixed seeds reproduce a run, and a checkpoint resumes it exactly."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

import trainer.fit
from biomarker_service.model import TSMResNet
from lus.errors import InvalidInput
from lus.video import DecodedVideo, InputSpec
from trainer.fit import FitConfig, Schedule, fit_tsm

SPEC = InputSpec(frames_per_clip=4, size=16, clips=1)


def _data() -> tuple[list[DecodedVideo], np.ndarray]:
    rng = np.random.default_rng(0)
    videos = [
        DecodedVideo(frames=rng.integers(0, 256, (6, 16, 16), dtype=np.uint8), fps=10.0)
        for _ in range(8)
    ]
    labels = rng.integers(0, 2, (8, 3)).astype(np.float32)
    labels[0, 1] = np.nan
    return videos, labels


def _run(
    epochs: int, checkpoint: Path | None = None, schedule: Schedule = "plateau"
) -> tuple[list[dict[str, float]], dict]:  # type: ignore[type-arg]
    torch.manual_seed(123)  # same initial weights for every run
    model = TSMResNet(num_outputs=3, spec=SPEC, width=4)
    videos, labels = _data()
    cfg = FitConfig(
        epochs=epochs,
        batch_size=4,
        lr=1e-3,
        seed=5,
        schedule=schedule,
        checkpoint=checkpoint,
        progress=False,
        desc="t",
    )
    result = fit_tsm(
        model,
        torch.device("cpu"),
        (videos, labels),
        (videos[:4], labels[:4]),
        objective="multilabel",
        cfg=cfg,
    )
    return result.history, model.state_dict()


def test_fixed_seeds_reproduce_the_same_numbers() -> None:
    first, state_a = _run(2)
    second, state_b = _run(2)
    assert first == second
    for key in state_a:
        torch.testing.assert_close(state_a[key], state_b[key])


def test_extended_plateau_run_equals_an_uninterrupted_one(tmp_path: Path) -> None:
    straight, state = _run(3)
    checkpoint = tmp_path / "ck.pt"
    _run(2, checkpoint)  # "interrupted" after 2 epochs
    resumed, resumed_state = _run(3, checkpoint)
    assert [h["train_loss"] for h in resumed] == pytest.approx([h["train_loss"] for h in straight])
    for key in state:
        torch.testing.assert_close(resumed_state[key], state[key])


def test_checkpoint_of_another_run_is_refused(tmp_path: Path) -> None:
    checkpoint = tmp_path / "ck.pt"
    _run(1, checkpoint)
    model = TSMResNet(num_outputs=3, spec=SPEC, width=4)
    videos, labels = _data()
    cfg = FitConfig(epochs=2, seed=99, checkpoint=checkpoint, progress=False, desc="t")
    with pytest.raises(InvalidInput, match="belongs to another run"):
        fit_tsm(model, torch.device("cpu"), (videos, labels), None, objective="multilabel", cfg=cfg)


def test_interrupted_cosine_run_resumes_exactly(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    straight, state = _run(3, schedule="cosine")
    checkpoint = tmp_path / "ck.pt"
    calls = {"n": 0}
    real = trainer.fit._val_score

    def crash_in_epoch_3(*args, **kwargs):  # type: ignore[no-untyped-def]
        calls["n"] += 1
        if calls["n"] == 3:
            raise KeyboardInterrupt
        return real(*args, **kwargs)

    monkeypatch.setattr(trainer.fit, "_val_score", crash_in_epoch_3)
    with pytest.raises(KeyboardInterrupt):
        _run(3, checkpoint, schedule="cosine")
    monkeypatch.undo()
    resumed, resumed_state = _run(3, checkpoint, schedule="cosine")
    assert [h["lr"] for h in resumed] == pytest.approx([h["lr"] for h in straight])
    for key in state:
        torch.testing.assert_close(resumed_state[key], state[key])


def test_a_cosine_checkpoint_is_not_extended_to_another_schedule(tmp_path: Path) -> None:
    checkpoint = tmp_path / "ck.pt"
    _run(2, checkpoint, schedule="cosine")
    with pytest.raises(InvalidInput, match="belongs to another run"):
        _run(3, checkpoint, schedule="cosine")
