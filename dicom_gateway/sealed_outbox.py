"""The outbox as the gateway uses it: every payload sealed, no UID in the store.

``SealedOutbox`` wraps a store (SQLite or Redis) that keeps opaque job ids and opaque payloads:
it names a job by the keyed hash of its source SOP Instance UID (so a re-sent instance is still
recognised) and seals each payload before the store sees it. A payload that does not open
(another key, or changed on disk) fails its job for good: logged without content, counted.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import replace
from typing import Literal

from dicom_gateway.outbox import Job, Outbox, State
from dicom_gateway.outbox_key import OutboxKeys, SealError

logger = logging.getLogger(__name__)


class SealedOutbox:
    """``Outbox`` whose ``accept`` takes the source SOP Instance UID; every other key is the
    job id it returned in ``Job.key``."""

    def __init__(
        self, store: Outbox, keys: OutboxKeys, on_unreadable: Callable[[], None] = lambda: None
    ) -> None:
        self.store = store
        self.keys = keys
        self.on_unreadable = on_unreadable

    def accept(self, key: str, instance: bytes) -> bool:
        job_id = self.keys.job_id(key)
        return self.store.accept(job_id, self.keys.seal(job_id, instance))

    def backlog(self) -> int:
        return self.store.backlog()

    def claim(self, state: Literal["received", "pending"], limit: int) -> list[Job]:
        jobs = []
        for job in self.store.claim(state, limit):
            try:
                jobs.append(replace(job, payload=self.keys.open(job.key, job.payload)))
            except SealError as err:
                # The reason names no content; the job cannot succeed with this key file.
                logger.error("an outbox job's payload does not open (%s): job failed", err)
                self.store.fail(job.key)
                self.on_unreadable()
        return jobs

    def analysed(self, key: str, report: bytes) -> None:
        self.store.analysed(key, self.keys.seal(key, report))

    def acknowledged(self, key: str) -> None:
        self.store.acknowledged(key)

    def retry(self, key: str, delay_s: float, max_attempts: int) -> State:
        return self.store.retry(key, delay_s, max_attempts)

    def fail(self, key: str) -> None:
        self.store.fail(key)

    def counts(self) -> dict[State, int]:
        return self.store.counts()

    def close(self) -> None:
        self.store.close()
