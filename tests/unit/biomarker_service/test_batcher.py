"""The dynamic batcher through its public API, with a fake model that records its batches."""

from __future__ import annotations

import asyncio
from collections.abc import Coroutine
from typing import Any, TypeVar

import numpy as np
import pytest

from biomarker_service.batcher import DynamicBatcher
from lus.errors import DeadlineExpired, QueueFull

T = TypeVar("T")


class FakeModel:
    """Outputs each clip's (mean, first pixel); optionally waits on a gate; fails on marker 255."""

    def __init__(self, gated: bool = False) -> None:
        self.batches: list[np.ndarray] = []
        self.gate: asyncio.Event | None = asyncio.Event() if gated else None
        self.started = asyncio.Event()

    async def __call__(self, clips: np.ndarray) -> np.ndarray:
        self.batches.append(clips.copy())
        self.started.set()
        if self.gate is not None:
            await self.gate.wait()
        if (clips[:, 0, 0, 0] == 255).any():
            raise RuntimeError("model failure on a poisoned clip")
        flat = clips.reshape(len(clips), -1).astype(np.float32)
        return np.stack([flat.mean(axis=1), flat[:, 0]], axis=1)


def video(tag: int, clips: int = 2) -> np.ndarray:
    """A video whose clips are tagged: the first pixel of clip k is ``tag * 10 + k``."""
    data = np.full((clips, 2, 3, 3), tag, dtype=np.uint8)
    for k in range(clips):
        data[k, 0, 0, 0] = tag * 10 + k
    return data


def expected(clips: np.ndarray) -> np.ndarray:
    flat = clips.reshape(len(clips), -1).astype(np.float32)
    return np.stack([flat.mean(axis=1), flat[:, 0]], axis=1)


class Recorder:
    def __init__(self) -> None:
        self.depths: list[int] = []
        self.batches: list[tuple[int, int]] = []
        self.drops: list[str] = []

    def queue_depth(self, videos: int) -> None:
        self.depths.append(videos)

    def batch(self, *, videos: int, clips: int, seconds: float) -> None:
        assert seconds >= 0
        self.batches.append((videos, clips))

    def dropped(self, reason: str) -> None:
        self.drops.append(reason)


def run(coro: Coroutine[Any, Any, T]) -> T:
    return asyncio.run(coro)


def test_concurrent_videos_share_batches_of_whole_videos() -> None:
    async def scenario() -> tuple[FakeModel, list[np.ndarray], Recorder]:
        model, recorder = FakeModel(), Recorder()
        batcher = DynamicBatcher(model, max_batch_size=5, max_wait_ms=50, observer=recorder)
        videos = [video(t) for t in range(1, 8)]
        results = await asyncio.gather(*(batcher.submit(v) for v in videos))
        await batcher.close()
        return model, results, recorder

    model, results, recorder = run(scenario())
    for tag, result in enumerate(results, start=1):
        np.testing.assert_array_equal(result, expected(video(tag)))
    assert len(model.batches) < 7  # videos were batched together
    for batch in model.batches:
        assert len(batch) <= 5 and len(batch) % 2 == 0  # 2-clip videos never split
        tags = batch[:, 0, 0, 0] // 10
        assert list(tags) == sorted(tags)  # arrival order kept
        for k in range(0, len(batch), 2):  # each video's clips adjacent and in order
            assert list(batch[k : k + 2, 0, 0, 0] % 10) == [0, 1]
    assert sum(v for v, _ in recorder.batches) == 7
    assert max(recorder.depths) >= 2


def test_a_video_larger_than_the_batch_runs_alone_and_whole() -> None:
    async def scenario() -> tuple[FakeModel, np.ndarray]:
        model = FakeModel()
        batcher = DynamicBatcher(model, max_batch_size=3, max_wait_ms=1)
        big = video(4, clips=5)
        result = await batcher.submit(big)
        await batcher.close()
        return model, result

    model, result = run(scenario())
    assert [len(b) for b in model.batches] == [5]
    np.testing.assert_array_equal(result, expected(video(4, clips=5)))


def test_full_queue_refuses_with_a_retry_hint_and_recovers() -> None:
    async def scenario() -> None:
        model = FakeModel(gated=True)
        batcher = DynamicBatcher(model, max_batch_size=2, max_wait_ms=0, max_queue=2)
        first = asyncio.create_task(batcher.submit(video(1)))
        await model.started.wait()  # video 1 is on the model; the queue is empty
        queued = [asyncio.create_task(batcher.submit(video(t))) for t in (2, 3)]
        await asyncio.sleep(0)
        assert batcher.queue_depth == 2
        with pytest.raises(QueueFull) as caught:
            await batcher.submit(video(4))
        assert caught.value.retry_after_ms > 0
        assert (
            "retry-after-ms",
            str(caught.value.retry_after_ms),
        ) in caught.value.trailing_metadata
        assert "retry after" in str(caught.value)
        assert model.gate is not None
        model.gate.set()
        await asyncio.gather(first, *queued)
        np.testing.assert_array_equal(await batcher.submit(video(5)), expected(video(5)))
        await batcher.close()

    run(scenario())


def test_cancelled_request_leaves_the_queue_without_poisoning_its_batch() -> None:
    async def scenario() -> None:
        model, recorder = FakeModel(gated=True), Recorder()
        batcher = DynamicBatcher(model, max_batch_size=8, max_wait_ms=0, observer=recorder)
        first = asyncio.create_task(batcher.submit(video(1)))
        await model.started.wait()
        doomed = asyncio.create_task(batcher.submit(video(2)))
        survivor = asyncio.create_task(batcher.submit(video(3)))
        await asyncio.sleep(0)
        doomed.cancel()
        assert model.gate is not None
        model.gate.set()
        await first
        np.testing.assert_array_equal(await survivor, expected(video(3)))
        assert doomed.cancelled()
        seen = {int(t) for b in model.batches for t in b[:, 0, 0, 0] // 10}
        assert seen == {1, 3}  # the cancelled video never reached the model
        assert recorder.drops == ["cancelled"]
        await batcher.close()

    run(scenario())


def test_expired_deadline_is_dropped_before_the_model() -> None:
    async def scenario() -> None:
        model = FakeModel(gated=True)
        batcher = DynamicBatcher(model, max_batch_size=8, max_wait_ms=0)
        first = asyncio.create_task(batcher.submit(video(1)))
        await model.started.wait()
        loop = asyncio.get_running_loop()
        late = asyncio.create_task(batcher.submit(video(2), deadline=loop.time() - 1))
        await asyncio.sleep(0)
        assert model.gate is not None
        model.gate.set()
        await first
        with pytest.raises(DeadlineExpired):
            await late
        assert all(2 not in b[:, 0, 0, 0] // 10 for b in model.batches)
        await batcher.close()

    run(scenario())


def test_a_failing_batch_fails_only_its_own_requests() -> None:
    async def scenario() -> None:
        model = FakeModel(gated=True)
        batcher = DynamicBatcher(model, max_batch_size=2, max_wait_ms=0)
        first = asyncio.create_task(batcher.submit(video(1)))
        await model.started.wait()
        poisoned = video(2)
        poisoned[0, 0, 0, 0] = 255
        bad = asyncio.create_task(batcher.submit(poisoned))
        good = asyncio.create_task(batcher.submit(video(3)))
        await asyncio.sleep(0)
        assert model.gate is not None
        model.gate.set()
        await first
        with pytest.raises(RuntimeError, match="poisoned"):
            await bad
        np.testing.assert_array_equal(await good, expected(video(3)))
        np.testing.assert_array_equal(await batcher.submit(video(4)), expected(video(4)))
        await batcher.close()

    run(scenario())


def test_made_outside_a_loop_and_closed_batcher_refuses_work() -> None:
    model = FakeModel()
    batcher = DynamicBatcher(model, max_batch_size=4, max_wait_ms=1)  # no loop yet

    async def scenario() -> None:
        np.testing.assert_array_equal(await batcher.submit(video(1)), expected(video(1)))
        await batcher.close()
        with pytest.raises(Exception, match="shutting down"):
            await batcher.submit(video(2))

    run(scenario())


def test_close_finishes_queued_requests() -> None:
    async def scenario() -> None:
        model = FakeModel()
        batcher = DynamicBatcher(model, max_batch_size=2, max_wait_ms=100)
        tasks = [asyncio.create_task(batcher.submit(video(t))) for t in (1, 2, 3)]
        await asyncio.sleep(0)
        await batcher.close()
        for tag, task in zip((1, 2, 3), tasks, strict=True):
            np.testing.assert_array_equal(task.result(), expected(video(tag)))

    run(scenario())


def test_invalid_limits_are_refused() -> None:
    with pytest.raises(ValueError, match="max_batch_size"):
        DynamicBatcher(FakeModel(), max_batch_size=0)
