"""The batcher survives a batch that cannot even be prepared (issue 11, item 8).

Stacking the clips of a batch used to sit outside the ``try``: clips of mismatched shapes made
``np.concatenate`` raise, the worker task died, and every later request waited forever.
"""

from __future__ import annotations

import asyncio

import numpy as np
import pytest

from biomarker_service.batcher import DynamicBatcher


class GatedModel:
    """Mean of each clip; the first batch waits on ``gate`` so that others queue behind it."""

    def __init__(self) -> None:
        self.gate = asyncio.Event()
        self.started = asyncio.Event()
        self.batches = 0

    async def __call__(self, clips: np.ndarray) -> np.ndarray:
        self.batches += 1
        self.started.set()
        await self.gate.wait()
        means: np.ndarray = clips.reshape(len(clips), -1).astype(np.float32).mean(axis=1)
        return means[:, None]


class Recorder:
    def __init__(self) -> None:
        self.batches: list[tuple[int, int]] = []

    def queue_depth(self, videos: int) -> None:
        pass

    def batch(self, *, videos: int, clips: int, seconds: float) -> None:
        self.batches.append((videos, clips))

    def dropped(self, reason: str) -> None:
        pass


def test_a_batch_whose_stacking_raises_fails_every_waiter_and_the_next_request_succeeds() -> None:
    async def scenario() -> None:
        model = GatedModel()
        recorder = Recorder()
        batcher = DynamicBatcher(model, max_batch_size=8, max_wait_ms=0, observer=recorder)
        holder = asyncio.create_task(batcher.submit(np.zeros((1, 2, 3, 3), np.uint8)))
        await model.started.wait()  # the worker is busy: the next two queue as one batch
        small = asyncio.create_task(batcher.submit(np.zeros((1, 2, 3, 3), np.uint8)))
        large = asyncio.create_task(batcher.submit(np.zeros((2, 2, 4, 4), np.uint8)))
        await asyncio.sleep(0)
        model.gate.set()
        await holder
        for waiter in (small, large):
            with pytest.raises(ValueError, match="dimension"):
                await waiter
        assert model.batches == 1  # the mismatched batch never reached the model
        result = await batcher.submit(np.full((3, 2, 3, 3), 6, np.uint8))
        np.testing.assert_array_equal(result, np.full((3, 1), 6.0, np.float32))
        assert recorder.batches == [(1, 1), (2, 3), (1, 3)]
        await batcher.close()

    asyncio.run(scenario())
