"""Dynamic batching: concurrent videos share one forward pass, whole videos only, in order.

Each request is one video's clips ``(clips, T, H, W)``. A batch is filled in arrival order up to
``max_batch_size`` clips or until ``max_wait_ms`` has passed since its first request arrived; a
video is never split across batches (the temporal shift mixes frames inside a clip, and the
per-video mean needs all its clips), so a batch may end below the limit, and a single video
larger than the limit runs alone. Requests that were cancelled or whose deadline passed while
queued are dropped before they cost model time. A failing batch fails only its own requests.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections import deque
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Protocol

import numpy as np

from lus.errors import DeadlineExpired, Overloaded, QueueFull

logger = logging.getLogger(__name__)

Predict = Callable[[np.ndarray], Awaitable[np.ndarray]]
"""Runs the model on stacked clips ``(N, T, H, W)``; returns ``(N, outputs)``."""


class BatchObserver(Protocol):
    """Receives the batcher's figures; ``biomarker_service.metrics`` exports them."""

    def queue_depth(self, videos: int) -> None: ...

    def batch(self, *, videos: int, clips: int, seconds: float) -> None: ...

    def dropped(self, reason: str) -> None: ...


@dataclass(eq=False)
class _Request:
    clips: np.ndarray
    future: asyncio.Future[np.ndarray]
    deadline: float | None  # loop.time() after which the result is useless
    enqueued: float = field(default_factory=time.monotonic)

    @property
    def size(self) -> int:
        return int(self.clips.shape[0])


class DynamicBatcher:
    """Collects concurrent requests into batches for one model.

    Create it anywhere; its queue and worker start inside the running loop on first use
    (``start()`` or ``submit()``), so it binds to the loop that actually serves.
    """

    def __init__(
        self,
        predict: Predict,
        *,
        max_batch_size: int = 32,
        max_wait_ms: float = 5.0,
        max_queue: int = 256,
        observer: BatchObserver | None = None,
    ) -> None:
        """Configure the batcher.

        Args:
            predict: the model call, awaited once per batch (e.g. ``ModelThread.run``).
            max_batch_size: most clips in one forward pass (a video adds all its clips).
            max_wait_ms: how long the first request of a batch waits for company.
            max_queue: most videos waiting; beyond it ``submit`` raises ``QueueFull``.
            observer: optional metrics sink.
        """
        if max_batch_size < 1 or max_queue < 1 or max_wait_ms < 0:
            raise ValueError("max_batch_size and max_queue must be >= 1, max_wait_ms >= 0")
        self._predict = predict
        self.max_batch_size = max_batch_size
        self.max_wait_s = max_wait_ms / 1000.0
        self.max_queue = max_queue
        self._observer = observer
        self._pending: deque[_Request] = deque()
        self._wakeup: asyncio.Event | None = None
        self._worker: asyncio.Task[None] | None = None
        self._closing = False
        self._batch_seconds = 0.05  # running estimate of one batch, for the retry hint
        self.batches_run = 0

    @property
    def queue_depth(self) -> int:
        """Videos waiting for a batch (not counting the batch on the model)."""
        return len(self._pending)

    def start(self) -> None:
        """Start the worker in the running loop (idempotent)."""
        if self._worker is None:
            self._wakeup = asyncio.Event()
            self._worker = asyncio.get_running_loop().create_task(
                self._run(), name="dynamic-batcher"
            )

    async def submit(self, clips: np.ndarray, *, deadline: float | None = None) -> np.ndarray:
        """Queue one video's clips and wait for its ``(clips, outputs)`` result.

        Args:
            clips: ``(clips, T, H, W)`` uint8, kept together in one batch.
            deadline: ``loop.time()`` after which the caller no longer wants the answer.

        Raises:
            QueueFull: ``max_queue`` videos already wait; retry after the hinted time.
            DeadlineExpired: the deadline passed before the video reached the model.
        """
        if self._closing:
            raise Overloaded("the service is shutting down; retry on another replica")
        self.start()
        if len(self._pending) >= self.max_queue:
            retry_ms = self._retry_hint_ms()
            raise QueueFull(
                f"the model queue is full ({self.max_queue} videos waiting); "
                f"retry after about {retry_ms} ms",
                retry_ms,
            )
        loop = asyncio.get_running_loop()
        request = _Request(clips, loop.create_future(), deadline)
        self._pending.append(request)
        self._notify_depth()
        assert self._wakeup is not None
        self._wakeup.set()
        # Cancelling this await (client gone, deadline hit) cancels the future, and the worker
        # then skips the request.
        return await request.future

    def _retry_hint_ms(self) -> int:
        queued_clips = sum(r.size for r in self._pending)
        batches = max(1.0, queued_clips / self.max_batch_size)
        return max(10, int(1000 * batches * self._batch_seconds))

    def _notify_depth(self) -> None:
        if self._observer is not None:
            self._observer.queue_depth(len(self._pending))

    def _drop_dead(self) -> None:
        """Remove cancelled and expired requests from the queue head and body."""
        now = asyncio.get_running_loop().time()
        alive: deque[_Request] = deque()
        for request in self._pending:
            if request.future.done():
                self._dropped("cancelled")
            elif request.deadline is not None and now >= request.deadline:
                request.future.set_exception(
                    DeadlineExpired("the deadline passed while the video waited for the model")
                )
                self._dropped("deadline")
            else:
                alive.append(request)
        self._pending = alive

    def _dropped(self, reason: str) -> None:
        if self._observer is not None:
            self._observer.dropped(reason)

    def _take_batch(self) -> list[_Request]:
        """Whole videos from the queue head, up to ``max_batch_size`` clips (at least one)."""
        batch: list[_Request] = []
        clips = 0
        while self._pending:
            head = self._pending[0]
            if batch and clips + head.size > self.max_batch_size:
                break
            batch.append(self._pending.popleft())
            clips += head.size
        return batch

    async def _fill_window(self) -> None:
        """Wait until a full batch is queued or ``max_wait`` has passed since the oldest request."""
        assert self._wakeup is not None
        first = self._pending[0].enqueued
        while sum(r.size for r in self._pending) < self.max_batch_size:
            remaining = self.max_wait_s - (time.monotonic() - first)
            if remaining <= 0 or self._closing:
                return
            self._wakeup.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wakeup.wait(), timeout=remaining)

    async def _run(self) -> None:
        assert self._wakeup is not None
        while True:
            self._drop_dead()
            if not self._pending:
                if self._closing:
                    return
                self._wakeup.clear()
                await self._wakeup.wait()
                continue
            await self._fill_window()
            self._drop_dead()
            batch = self._take_batch()
            self._notify_depth()
            if batch:
                await self._run_batch(batch)

    async def _run_batch(self, batch: list[_Request]) -> None:
        """Run one batch; any failure, preparing it included, fails only its own waiters.

        Stacking sits inside the ``try``: should it raise (clips of another shape), the worker
        would otherwise die with it and every later request wait forever.
        """
        started = time.monotonic()
        clips = sum(r.size for r in batch)
        try:
            stacked = np.concatenate([r.clips for r in batch], axis=0)
            outputs = await self._predict(stacked)
            if outputs.shape[0] != stacked.shape[0]:
                raise RuntimeError(
                    f"model returned {outputs.shape[0]} rows for {stacked.shape[0]} clips"
                )
        except Exception as err:  # this batch's waiters get the error; the worker lives on
            logger.exception("model failed on a batch of %d videos", len(batch))
            for request in batch:
                if not request.future.done():
                    request.future.set_exception(err)
            return
        finally:
            seconds = time.monotonic() - started
            self._batch_seconds = 0.8 * self._batch_seconds + 0.2 * seconds
            self.batches_run += 1
            if self._observer is not None:
                self._observer.batch(videos=len(batch), clips=clips, seconds=seconds)
        offset = 0
        for request in batch:
            if not request.future.done():  # cancelled while on the model: nobody to answer
                request.future.set_result(outputs[offset : offset + request.size])
            offset += request.size

    async def close(self) -> None:
        """Finish every queued request, then stop the worker; later submits are refused."""
        self._closing = True
        if self._worker is None:
            return
        assert self._wakeup is not None
        self._wakeup.set()
        await self._worker
        self._worker = None
