"""The training protocol of issue 15: a schedule that ignores a noisy validation AUC, dropout
before the head and weight decay, and loss weights for unmarked labels."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
import torch

from biomarker_service.model import TSMResNet
from lus.video import DecodedVideo, InputSpec
from trainer.fit import (
    FitConfig,
    dropout_before_head,
    fit_tsm,
    masked_bce,
    predict_clips,
    predict_videos,
)

SPEC = InputSpec(frames_per_clip=4, size=16, clips=1)


def _data(n: int = 8) -> tuple[list[DecodedVideo], np.ndarray]:
    rng = np.random.default_rng(0)
    videos = [
        DecodedVideo(frames=rng.integers(0, 256, (6, 16, 16), dtype=np.uint8), fps=10.0)
        for _ in range(n)
    ]
    return videos, rng.integers(0, 2, (n, 3)).astype(np.float32)


def _fit(cfg: FitConfig, with_val: bool = True) -> tuple[TSMResNet, list[dict[str, float]], int]:
    torch.manual_seed(0)
    model = TSMResNet(num_outputs=3, spec=SPEC, width=4)
    videos, labels = _data()
    val = (videos[:4], labels[:4]) if with_val else None
    result = fit_tsm(
        model, torch.device("cpu"), (videos, labels), val, objective="multilabel", cfg=cfg
    )
    return model, result.history, result.kept_epoch


def test_cosine_schedule_anneals_and_keeps_the_last_epoch_whatever_validation_says() -> None:
    cfg = FitConfig(epochs=4, batch_size=4, lr=1e-2, seed=1, progress=False, desc="t")
    assert cfg.schedule == "cosine"
    _model, history, kept = _fit(cfg)
    lrs = [h["lr"] for h in history]
    assert lrs[0] == pytest.approx(1e-2)
    assert all(a > b for a, b in itertools.pairwise(lrs))
    assert kept == 4  # the last epoch, even if an earlier one had a higher validation AUC
    assert all("val_auc" in h for h in history)  # still recorded


def test_plateau_schedule_keeps_the_best_validation_epoch() -> None:
    cfg = FitConfig(
        epochs=4, batch_size=4, lr=1e-2, seed=1, schedule="plateau", progress=False, desc="t"
    )
    _, history, kept = _fit(cfg)
    best = max(history, key=lambda h: h["val_auc"])
    assert kept == int(best["epoch"])


def test_dropout_acts_in_training_only_and_leaves_the_weight_names() -> None:
    torch.manual_seed(0)
    model = TSMResNet(num_outputs=3, spec=SPEC, width=4)
    names = set(model.state_dict())
    clips = torch.from_numpy(_data(2)[0][0].frames[:4][np.newaxis].copy())
    handle = dropout_before_head(model, 0.5)
    assert handle is not None
    model.eval()
    assert torch.equal(model(clips), model(clips))
    model.train()
    torch.manual_seed(1)
    a = model(clips)
    torch.manual_seed(2)
    assert not torch.equal(a, model(clips))
    handle.remove()
    assert set(model.state_dict()) == names
    assert dropout_before_head(model, 0.0) is None


def test_fit_removes_its_dropout_hook_and_applies_weight_decay() -> None:
    base = FitConfig(epochs=2, batch_size=4, lr=1e-2, seed=1, progress=False, desc="t")
    plain, _, _ = _fit(FitConfig(**{**base.__dict__, "weight_decay": 0.0}), with_val=False)
    decayed, _, _ = _fit(FitConfig(**{**base.__dict__, "weight_decay": 5.0}), with_val=False)
    assert not decayed.fc._forward_pre_hooks  # nothing of training stays on the model
    norm = [float(m.fc.weight.detach().norm()) for m in (plain, decayed)]
    assert norm[1] < norm[0] * 0.95


def test_masked_bce_weights_cells_and_zero_weight_is_a_mask() -> None:
    logits = torch.tensor([[0.3, -1.0], [2.0, 0.5]])
    labels = torch.tensor([[1.0, 0.0], [0.0, float("nan")]])
    ones = torch.ones_like(labels)
    assert masked_bce(logits, labels, ones) == pytest.approx(float(masked_bce(logits, labels)))
    weights = torch.tensor([[1.0, 0.0], [1.0, 1.0]])
    masked = labels.clone()
    masked[0, 1] = float("nan")
    assert masked_bce(logits, labels, weights) == pytest.approx(float(masked_bce(logits, masked)))
    half = torch.tensor([[1.0, 0.5], [1.0, 1.0]])
    cells = torch.nn.functional.binary_cross_entropy_with_logits(
        logits[:, :2].flatten()[:3], torch.tensor([1.0, 0.0, 0.0]), reduction="none"
    )
    expected = (cells[0] + 0.5 * cells[1] + cells[2]) / 2.5
    assert masked_bce(logits, labels, half) == pytest.approx(float(expected))


def test_per_clip_vectors_average_to_the_served_vector() -> None:
    torch.manual_seed(0)
    spec = InputSpec(frames_per_clip=4, size=16, clips=3)
    model = TSMResNet(num_outputs=3, spec=spec, width=4)
    videos, _ = _data(5)
    clips = predict_clips(model, videos, torch.device("cpu"), batch_videos=2)
    assert clips.shape == (5, 3, 3)
    assert not np.allclose(clips[:, 0], clips[:, 1])  # the clips differ: per clip is not a copy
    np.testing.assert_allclose(
        clips.mean(axis=1), predict_videos(model, videos, torch.device("cpu")), atol=1e-6
    )
