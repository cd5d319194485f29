"""Benchmark: biomarker-model training throughput (clips/s), augmentations included.

Times full training steps (clip sampling, per-clip augmentation, forward, masked BCE,
backward, Adam) on random videos, after warm-up steps. Uses a GPU when present (``--device``).
Run: ``python benchmarks/trainer_throughput.py [--width 64 --frames 15 --size 224]``; the
defaults are the paper's model; ``--width 16 --frames 8 --size 112`` is the reduced CPU size.
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import torch

from biomarker_service.model import tsm_resnet18
from biomarker_service.torch_backend import pick_device
from lus.schema import load_schema
from lus.video import DecodedVideo, InputSpec, make_clips
from trainer.augment import ClipAugment, augment_clips
from trainer.fit import masked_bce


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--width", type=int, default=64)
    parser.add_argument("--frames", type=int, default=15)
    parser.add_argument("--size", type=int, default=224)
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--steps", type=int, default=10)
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--device", default="auto")
    args = parser.parse_args()
    device = pick_device(args.device)
    schema = load_schema()
    spec = InputSpec(frames_per_clip=args.frames, size=args.size, clips=1)
    model = tsm_resnet18(schema=schema, spec=spec, width=args.width).to(device).train()
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-4)
    rng = np.random.default_rng(0)
    videos = [
        DecodedVideo(
            frames=rng.integers(0, 256, (40, args.size, args.size), dtype=np.uint8), fps=20.0
        )
        for _ in range(args.batch_size * 2)
    ]
    labels = torch.from_numpy(rng.integers(0, 2, (args.batch_size, len(schema))).astype(np.float32))
    aug = ClipAugment()

    def step() -> None:
        chosen = rng.choice(len(videos), args.batch_size, replace=False)
        clips = np.stack([make_clips(videos[i], spec, rng=rng)[0] for i in chosen])
        x = augment_clips(torch.from_numpy(clips).to(device), aug, rng)
        loss = masked_bce(model(x), labels.to(device))
        optimizer.zero_grad(set_to_none=True)
        loss.backward()  # type: ignore[no-untyped-call]
        optimizer.step()

    for _ in range(args.warmup):
        step()
    if device.type == "cuda":
        torch.cuda.synchronize()
    started = time.perf_counter()
    for _ in range(args.steps):
        step()
    if device.type == "cuda":
        torch.cuda.synchronize()
    seconds = time.perf_counter() - started
    name = torch.cuda.get_device_name(0) if device.type == "cuda" else "cpu"
    print(
        f"biomarker training: width {args.width}, {args.frames} frames x {args.size} px, "
        f"batch {args.batch_size}, device {name} ({torch.get_num_threads()} CPU threads)"
    )
    print(
        f"throughput: {args.steps * args.batch_size / seconds:.1f} clips/s "
        f"({seconds / args.steps:.3f} s/step over {args.steps} steps)"
    )


if __name__ == "__main__":
    main()
