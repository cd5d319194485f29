"""Clip augmentations: one transform per clip, applied identically to every frame."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from trainer.augment import ClipAugment, augment_clips


def _clips(b: int = 3, t: int = 4, size: int = 16, seed: int = 0) -> torch.Tensor:
    rng = np.random.default_rng(seed)
    return torch.from_numpy(rng.integers(0, 256, (b, t, size, size), dtype=np.uint8))


def test_no_augmentation_is_the_identity() -> None:
    clips = _clips()
    out = augment_clips(clips, ClipAugment.none(), np.random.default_rng(0))
    assert out.dtype == torch.float32
    torch.testing.assert_close(out, clips.float())


def test_flip_only_flips_whole_clips_horizontally() -> None:
    clips = _clips(b=16)
    out = augment_clips(clips, ClipAugment.flip_only(), np.random.default_rng(3))
    flipped = [
        bool(torch.allclose(o, c.float().flip(-1), atol=1e-3))
        for o, c in zip(out, clips, strict=True)
    ]
    kept = [bool(torch.allclose(o, c.float(), atol=1e-3)) for o, c in zip(out, clips, strict=True)]
    assert all(f != k for f, k in zip(flipped, kept, strict=True))  # each clip is one or the other
    assert 0 < sum(flipped) < 16


def test_every_frame_of_a_clip_gets_the_same_transform() -> None:
    frame = _clips(b=1, t=1, size=24)[0, 0]
    clips = frame.expand(6, 5, 24, 24).contiguous()  # 6 clips of 5 identical frames
    out = augment_clips(clips, ClipAugment(), np.random.default_rng(1))
    for clip in out:
        for t in range(1, 5):
            torch.testing.assert_close(clip[t], clip[0])
    assert not torch.allclose(out[0], out[1])  # but clips differ from one another


def test_paper_ranges_and_seed_reproducibility() -> None:
    clips = torch.full((64, 2, 8, 8), 100, dtype=torch.uint8)
    aug = ClipAugment(flip_p=0.0, scale=0.0, rotation_deg=0.0, translation=0.0)
    out = augment_clips(clips, aug, np.random.default_rng(0))
    gains = out[:, 0, 4, 4] / 100
    assert gains.min() >= 0.8 - 1e-6 and gains.max() <= 1.1 + 1e-6
    assert gains.max() - gains.min() > 0.15
    again = augment_clips(clips, aug, np.random.default_rng(0))
    torch.testing.assert_close(out, again)


@pytest.mark.parametrize("field", ["rotation_deg", "scale", "translation"])
def test_geometric_transforms_move_pixels(field: str) -> None:
    clips = _clips(b=4, t=2, size=32)
    value = {"rotation_deg": 15.0, "scale": 0.2, "translation": 0.05}[field]
    aug = ClipAugment(
        flip_p=0.0,
        intensity=(1.0, 1.0),
        scale=value if field == "scale" else 0.0,
        rotation_deg=value if field == "rotation_deg" else 0.0,
        translation=value if field == "translation" else 0.0,
    )
    out = augment_clips(clips, aug, np.random.default_rng(2))
    assert not torch.allclose(out, clips.float())
    assert float(out.min()) >= 0.0 and float(out.max()) <= 255.0
