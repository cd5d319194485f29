"""Key names of the Redis registry, shared by the registry, its backfill and its restore."""

from __future__ import annotations

from typing import Any

from expert_service.registry.base import ALIASES
from expert_service.registry.durable import TaskRecord


class RedisKeys:
    """Every key of a registry under ``prefix`` (see ``redis_store`` for what each holds)."""

    def __init__(self, prefix: str) -> None:
        self.prefix = prefix
        self.tasks = f"{prefix}tasks"
        self.revision = f"{prefix}revision"
        self.epoch = f"{prefix}epoch"
        self.events = f"{prefix}events"
        self.write_lock = f"{prefix}write-lock"

    def task(self, task: str, *parts: object) -> str:
        return ":".join([f"{self.prefix}task", task, *map(str, parts)])

    def versions(self, task: str) -> str:
        return self.task(task, "versions")

    def sha(self, task: str) -> str:
        return self.task(task, "sha")

    def version(self, task: str, version: int) -> str:
        return self.task(task, "v", version)

    def history(self, task: str, alias: str) -> str:
        return self.task(task, "history", alias)


def read_record(client: Any, keys: RedisKeys, task: str) -> TaskRecord:
    """The task as Redis holds it, in the durable copy's shape (``client`` may be a pipeline in
    WATCH mode: its reads run at once)."""
    fields: dict[bytes, bytes] = client.hgetall(keys.task(task))
    return TaskRecord(
        versions=sorted(int(v) for v in client.smembers(keys.versions(task))),
        owner=(fields.get(b"owner") or b"").decode(),
        next_version=int(fields.get(b"next_version") or 1),
        aliases={
            k.decode().removeprefix("alias:"): int(v)
            for k, v in fields.items()
            if k.startswith(b"alias:")
        },
        history={
            alias: [int(x) for x in client.lrange(keys.history(task, alias), 0, -1)]
            for alias in ALIASES
        },
    )
