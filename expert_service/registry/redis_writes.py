"""How the Redis registry writes: one writer at a time (a lock in Redis), the durable copy
first, then one WATCH/MULTI/EXEC transaction, refused while the epoch is wrong."""

from __future__ import annotations

import contextlib
from collections.abc import Callable
from typing import Any, TypeVar

import redis

from expert_service.registry.durable import DurableCopy, TaskRecord
from expert_service.registry.epoch import EpochGuard
from expert_service.registry.redis_keys import RedisKeys, read_record
from lus.errors import NotReady

R = TypeVar("R")


class RegistryWriter:
    """Runs the registry's write transactions.

    Args:
        client: The registry's Redis client.
        keys: Its key names.
        epoch: Its epoch guard (a write needs the expected epoch in Redis).
        durable: The durable copy written before Redis; None keeps none.
        lock_timeout_s: Longest a writer holds the lock, and waits for it.
    """

    def __init__(
        self,
        client: redis.Redis,
        keys: RedisKeys,
        epoch: EpochGuard,
        durable: DurableCopy | None,
        lock_timeout_s: float,
    ) -> None:
        self.client = client
        self.keys = keys
        self.epoch = epoch
        self.durable = durable
        self.lock_timeout_s = lock_timeout_s

    def write(self, commit: Callable[[Any], R], *keys: str) -> R:
        """Run ``commit`` (given a pipeline in WATCH mode; it calls ``multi()``) as a registry
        write: under the write lock, so the durable copy and Redis are written by one writer
        at a time, in that order; refused while the epoch is wrong; committed only while this
        writer still holds the lock (the lock key is watched)."""
        lock = self.client.lock(
            self.keys.write_lock,
            timeout=self.lock_timeout_s,
            blocking_timeout=self.lock_timeout_s,
        )
        if not lock.acquire():
            raise NotReady(
                f"another registry write held the write lock for {self.lock_timeout_s:.0f} s; "
                "retry - nothing was changed"
            )
        token = lock.local.token

        def guarded(pipe: Any) -> R:
            if pipe.get(self.keys.write_lock) != token:
                raise NotReady(
                    f"this registry write took longer than {self.lock_timeout_s:.0f} s and "
                    "lost the write lock; retry"
                )
            found = pipe.get(self.keys.epoch)
            self.epoch.check_writable(found.decode("ascii", "replace") if found else None)
            return commit(pipe)

        try:
            return self.transaction(guarded, self.keys.write_lock, self.keys.epoch, *keys)
        finally:
            with contextlib.suppress(redis.RedisError):
                lock.release()

    def transaction(self, commit: Callable[[Any], R], *keys: str) -> R:
        """Run ``commit`` under WATCH of ``keys`` until no other writer raced it."""
        with self.client.pipeline(transaction=True) as pipe:
            while True:
                try:
                    pipe.watch(*keys)  # type: ignore[no-untyped-call]
                    value = commit(pipe)
                    pipe.execute()
                    return value
                except redis.WatchError:
                    continue  # another writer changed a watched key first: read again

    def persist(self, pipe: Any, task: str, change: Callable[[TaskRecord], None]) -> None:
        """Write the task's durable record as it will be after this write (read from Redis,
        ``change`` applied), before the write reaches Redis; nothing without a copy."""
        if self.durable is None:
            return
        record = read_record(pipe, self.keys, task)
        for version in record.versions:
            if not self.durable.has_version(task, version):
                # Written by a writer that keeps no copy (or before this one kept any).
                stored = pipe.hgetall(self.keys.version(task, version))
                fields = {name.decode(): value for name, value in stored.items()}
                self.durable.write_version(task, version, fields)
        change(record)
        self.durable.write_task(task, record)


def add_version(record: TaskRecord, version: int, owner: str) -> None:
    record.versions.append(version)
    record.next_version = version + 1
    record.owner = record.owner or owner


def move_alias(record: TaskRecord, alias: str, to: int) -> None:
    previous = record.aliases.get(alias, 0)
    if previous:
        record.history.setdefault(alias, []).append(previous)
    record.aliases[alias] = to


def step_back(record: TaskRecord, alias: str) -> None:
    record.aliases[alias] = record.history[alias].pop()


def drop_version(record: TaskRecord, version: int) -> None:
    record.versions = [v for v in record.versions if v != version]
    record.history = {a: [v for v in h if v != version] for a, h in record.history.items()}
