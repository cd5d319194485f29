"""Both tiers in one process on localhost with the embedded registry: ``lus serve``, the demo."""

from __future__ import annotations

import asyncio
import logging
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from lus.rpc.lifecycle import RunningServer, run_until_signal

if TYPE_CHECKING:  # imported when a stack starts: ``lus`` alone must not pay for both tiers
    from expert_service.server import ExpertServer

logger = logging.getLogger(__name__)

GRACE_S = 5.0
"""Seconds in-flight calls get to finish when the local stack stops."""


@dataclass(frozen=True)
class LocalStack:
    artifact: Path
    registry: Path
    host: str = "127.0.0.1"
    biomarker_port: int = 50051
    expert_port: int = 50052
    expert_admin_port: int = 50053


async def start_stack(stack: LocalStack) -> tuple[RunningServer, ExpertServer]:
    """Start both tiers' servers; the expert tier fits TrainExpert jobs with the trainer."""
    from biomarker_service.server import create_server as create_biomarker
    from biomarker_service.settings import BiomarkerSettings
    from expert_service.server import create_server as create_expert
    from expert_service.server import process_fitter
    from expert_service.settings import ExpertSettings
    from trainer.expert_fitting import fit_in_worker

    # One audit trail for both tiers, beside the registry (appends from both are whole lines).
    audit_path = stack.registry.parent / "lus-audit.jsonl"
    biomarker = await create_biomarker(
        BiomarkerSettings(
            artifact=stack.artifact,
            host=stack.host,
            port=stack.biomarker_port,
            audit_path=audit_path,
        )
    )
    settings = ExpertSettings(
        host=stack.host,
        port=stack.expert_port,
        admin_port=stack.expert_admin_port,
        registry_dir=stack.registry,
        audit_path=audit_path,
    )
    try:
        # The fitting process starts on the first TrainExpert job, so serving pays nothing.
        expert = await create_expert(settings, fitter=process_fitter(settings, fit_in_worker))
    except BaseException:
        await biomarker.stop(0.0)
        raise
    logger.info(
        "serving: biomarker %s:%d, expert %s:%d (admin %d)",
        stack.host,
        biomarker.port,
        stack.host,
        expert.port,
        expert.admin_port,
    )
    return biomarker, expert


async def run_stack(
    stack: LocalStack,
    ready: asyncio.Event | None = None,
    stop: asyncio.Event | None = None,
    ports: dict[str, int] | None = None,
) -> None:
    """Start both servers, signal ``ready`` (ports in ``ports``), run until ``stop``, then drain."""
    stop = stop or asyncio.Event()
    biomarker, expert = await start_stack(stack)
    if ports is not None:
        ports.update(biomarker=biomarker.port, expert=expert.port, expert_admin=expert.admin_port)
    if ready is not None:
        ready.set()
    await stop.wait()
    logger.info("stopping: health NOT_SERVING, draining in-flight calls")
    await asyncio.gather(biomarker.stop(GRACE_S), expert.stop(GRACE_S))
    logger.info("stopped")


def serve_forever(stack: LocalStack) -> None:
    """``lus serve``: both tiers until SIGTERM or SIGINT, then drain both."""

    async def main() -> None:
        servers = await start_stack(stack)
        await run_until_signal(list(servers), GRACE_S)
        logger.info("stopped")

    asyncio.run(main())


@contextmanager
def running_stack(stack: LocalStack, timeout_s: float = 120.0) -> Iterator[dict[str, int]]:
    """Run the stack on a background thread; yields the bound ports."""
    loop = asyncio.new_event_loop()
    ready, stop = threading.Event(), None
    ports: dict[str, int] = {}
    errors: list[BaseException] = []

    async def main() -> None:
        nonlocal stop
        stop = asyncio.Event()
        started = asyncio.Event()
        task = asyncio.create_task(run_stack(stack, started, stop, ports))
        waiter = asyncio.create_task(started.wait())
        await asyncio.wait({task, waiter}, return_when=asyncio.FIRST_COMPLETED)
        if task.done():  # failed while starting: re-raise here so target() records it
            waiter.cancel()
            await task
        ready.set()
        await task

    def target() -> None:
        try:
            loop.run_until_complete(main())
        except BaseException as err:  # surfaced to the caller below
            errors.append(err)
            ready.set()
        finally:
            loop.close()

    thread = threading.Thread(target=target, name="lus-stack", daemon=True)
    thread.start()
    if not ready.wait(timeout_s) or errors:
        raise RuntimeError(f"local stack did not start: {errors[0] if errors else 'timeout'}")
    try:
        yield ports
    finally:
        if stop is not None:
            loop.call_soon_threadsafe(stop.set)
        thread.join(timeout_s)
