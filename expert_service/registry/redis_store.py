"""A registry in Redis, shared by every replica; writes are WATCH/MULTI/EXEC transactions.

Keys under ``prefix`` (default ``lus:expert:``)::

    tasks                      SET   task names with at least one version
    task:<t>                   HASH  owner, next_version, alias:<alias> -> version
    task:<t>:versions          SET   stored version numbers
    task:<t>:sha               HASH  sha256 -> version (refuses the same bytes twice)
    task:<t>:v:<n>             HASH  card (JSON), model (ONNX bytes), signature (``signing``)
                                     and, when registered with them, training_set
                                     (``training_set`` .npz bytes): written in one command
    task:<t>:history:<alias>   LIST  where the alias pointed before each promote (rollback)
    revision                   INT   counts writes; replicas poll it as a safety net
    epoch                      STR   which registry this Redis holds (``epoch``)
    write-lock                 STR   held by the one writer at a time (redis-py ``Lock``)
    events                     channel: a write publishes the task name after it commits

Every write (version, sha index, counters, revision and the change event) is one MULTI/EXEC,
so it is applied whole or not at all, and the next version number is never reused. Redis errors
become ``NotReady`` (UNAVAILABLE): nothing is retried blindly, since a lost reply is ambiguous;
a caller that retries a registration gets ``AlreadyExists`` if the first attempt landed.

Durability: with a durable copy (``durable``, ``LUS_EXPERT_REGISTRY_DURABLE_DIR``) every write
takes the registry's write lock, writes the durable copy (atomic per file) and then commits to
Redis, so the copy holds at least what Redis holds and ``lus registry restore`` can rebuild a
Redis that lost its data. Every read checks the epoch (``epoch.EpochGuard``): an emptied or
swapped Redis makes reads fail (loaded experts keep answering) and writes refused, instead of
looking like a registry with no experts. Every read of a version checks its signature
(``signing.SignaturePolicy``) before its bytes leave this module.

Unlike the local folder, a version answers ``version=0`` only once the production alias points
to it (``TaskState.newest_is_live`` is False): in a registry every replica serves, registering
must not put a model in front of clinicians before someone decided it should.
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Callable, Mapping, Sequence
from dataclasses import replace
from typing import Any, ParamSpec, TypeVar
from urllib.parse import urlsplit, urlunsplit

import redis
from redis.backoff import NoBackoff
from redis.retry import Retry

from expert_service.card import ExpertCard, ExpertDraft, validate_task
from expert_service.errors import CorruptArtifact
from expert_service.registry import common
from expert_service.registry.base import ALIASES, PRODUCTION, RegistryState, TaskState
from expert_service.registry.durable import DurableCopy
from expert_service.registry.epoch import EpochGuard
from expert_service.registry.mirror import backfill
from expert_service.registry.redis_events import ChangeFeed
from expert_service.registry.redis_keys import RedisKeys
from expert_service.registry.redis_writes import (
    RegistryWriter,
    add_version,
    drop_version,
    move_alias,
    step_back,
)
from expert_service.registry.signing import SignaturePolicy
from expert_service.training_set import StoredTrainingSet
from lus.errors import FailedPrecondition, InvalidInput, LusError, NotReady

logger = logging.getLogger(__name__)

P = ParamSpec("P")
R = TypeVar("R")


def _unavailable(method: Callable[P, R]) -> Callable[P, R]:
    """Turn Redis and durable-copy failures into ``NotReady`` so callers see UNAVAILABLE, not
    INTERNAL (the only files a registry method touches are the durable copy's)."""

    @functools.wraps(method)
    def wrapper(*args: P.args, **kwargs: P.kwargs) -> R:
        try:
            return method(*args, **kwargs)
        except LusError:
            raise
        except redis.RedisError as err:
            raise NotReady(
                f"the expert registry (Redis) is unavailable ({type(err).__name__}); "
                "retry later - nothing was changed"
            ) from err
        except OSError as err:
            logger.exception("the registry's durable copy could not be written or read")
            raise NotReady(
                f"the expert registry's durable copy is unavailable ({type(err).__name__}); "
                "nothing was committed to Redis; retry once the volume is back"
            ) from err

    return wrapper


def _int(value: bytes | str | None, default: int = 0) -> int:
    return int(value) if value is not None else default


def _text(value: bytes | str | None) -> str | None:
    return value.decode("ascii", "replace") if isinstance(value, bytes) else value


def _bytes(value: bytes | str | None) -> bytes | None:
    return value if isinstance(value, bytes) else None


class RedisRegistry:
    """An ``ExpertRegistry`` in Redis.

    Args:
        url: e.g. ``redis://127.0.0.1:6379/0``.
        prefix: Prepended to every key and the change channel, so registries can share a server.
        timeout_s: Socket connect/read timeout; short, so an outage fails calls fast.
        durable: The durable copy written through on every write; None keeps no copy (a Redis
            that loses its data then cannot be restored).
        signatures: What is signed on write and accepted on read; default: nothing signed,
            unsigned records served (``SignaturePolicy()``).
        lock_timeout_s: How long the write lock is held at most (a writer that stalls longer
            loses it and its write fails); also how long a writer waits for it.
    """

    def __init__(
        self,
        url: str,
        *,
        prefix: str = "lus:expert:",
        timeout_s: float = 1.0,
        durable: DurableCopy | None = None,
        signatures: SignaturePolicy | None = None,
        lock_timeout_s: float = 30.0,
    ) -> None:
        self.url = url
        self.prefix = prefix
        self.timeout_s = timeout_s
        self.durable = durable
        self.signatures = signatures if signatures is not None else SignaturePolicy()
        self.lock_timeout_s = lock_timeout_s
        self.keys = RedisKeys(prefix)
        self.client: redis.Redis = redis.Redis.from_url(
            url,
            socket_timeout=timeout_s,
            socket_connect_timeout=timeout_s,
            retry=Retry(NoBackoff(), 0),
            health_check_interval=0,
        )
        self.channel = self.keys.events
        self.epoch = EpochGuard(
            durable,
            has_data=lambda: bool(self.client.scard(self.keys.tasks)),
            publish=self._publish_epoch,
            backfill=lambda: backfill(self.client, self.keys, durable),
        )
        self.writer = RegistryWriter(self.client, self.keys, self.epoch, durable, lock_timeout_s)

    @property
    def degraded(self) -> bool:
        """Whether the last epoch check found Redis emptied or holding another registry."""
        return self.epoch.degraded

    def __repr__(self) -> str:  # logged: never with the URL's password
        return f"RedisRegistry({without_password(self.url)!r}, prefix={self.prefix!r})"

    def persistence(self) -> str:
        """What the registry's Redis keeps on disk: "aof", "rdb", "none", or "unknown" where
        CONFIG is not allowed (managed Redis) or the server cannot be reached.

        Redis that keeps nothing on disk loses every expert when it restarts; the server warns
        about it at start, or refuses to start (``LUS_EXPERT_REGISTRY_PERSISTENCE``).
        """
        try:
            appendonly = self.client.config_get("appendonly").get("appendonly", "")
            save = self.client.config_get("save").get("save", "")
        except redis.RedisError:
            return "unknown"
        if str(appendonly) == "yes":
            return "aof"
        return "rdb" if str(save).strip() else "none"

    def close(self) -> None:
        self.client.close()

    def _key(self, task: str, *parts: object) -> str:
        return self.keys.task(task, *parts)

    def _publish_epoch(self, epoch: str) -> str:
        self.client.set(self.keys.epoch, epoch, nx=True)
        return _text(self.client.get(self.keys.epoch)) or epoch

    @_unavailable
    def register(self, draft: ExpertDraft, *, owner: str) -> ExpertCard:
        """Validate ``draft``'s model, store it as its task's next version and return its card."""
        task = draft.task
        unnumbered = common.draft_card(draft, owner=owner)
        examples = common.training_set_bytes(draft)
        stored: dict[str, bytes] = {"model": draft.onnx_bytes}
        if examples is not None:
            stored["training_set"] = examples
        task_key, sha_key = self._key(task), self._key(task, "sha")

        def commit(pipe: Any) -> ExpertCard:
            current_owner = (pipe.hget(task_key, "owner") or b"").decode()
            common.check_owner(task, current_owner, owner)
            existing = pipe.hget(sha_key, unnumbered.sha256)
            common.refuse_duplicate(task, _int(existing) if existing else None, unnumbered.sha256)
            # Only the production alias is live here, so a new class set cannot go live by
            # registering; it still needs allow_class_change to be registered at all.
            common.check_class_change(task, self._production_card(pipe, task), draft)
            card = replace(unnumbered, version=_int(pipe.hget(task_key, "next_version"), 1))
            fields = {**stored, "card": card.to_json().encode("utf-8")}
            signature = self.signatures.sign(task, card.version, fields["card"])
            if signature is not None:
                fields["signature"] = signature
            if self.durable is not None:  # the copy first: it must hold whatever Redis holds
                self.durable.write_version(task, card.version, fields)
            self.writer.persist(pipe, task, lambda r: add_version(r, card.version, owner))
            pipe.multi()
            pipe.hset(self._key(task, "v", card.version), mapping=fields)
            pipe.sadd(self._key(task, "versions"), card.version)
            pipe.hset(sha_key, card.sha256, card.version)
            pipe.hset(
                task_key,
                mapping={"next_version": card.version + 1, "owner": current_owner or owner},
            )
            pipe.sadd(f"{self.prefix}tasks", task)
            self._announce(pipe, task)
            return card

        card: ExpertCard = self.writer.write(commit, task_key, sha_key)
        logger.info("registered expert %s v%d (sha256 %s)", task, card.version, card.sha256[:12])
        return card

    @_unavailable
    def get(self, task: str, version: int = 0) -> tuple[ExpertCard, bytes]:
        """The card and ONNX bytes of a version (0 = default), verified against the sha256."""
        number = common.resolve(task, self.task_state(task), version)
        key = self._key(task, "v", number)
        text, model, signature = self.client.hmget(key, ["card", "model", "signature"])
        if not isinstance(text, bytes) or not isinstance(model, bytes):
            raise CorruptArtifact(f"expert {task} v{number} has no stored model or card")
        self.signatures.check(task, number, text, _bytes(signature))
        card = common.parse_card(task, number, text)
        common.verify(card, model)
        return card, model

    @_unavailable
    def card(self, task: str, version: int = 0) -> ExpertCard:
        """The card of a version (0 = default) without reading the model."""
        number = common.resolve(task, self.task_state(task), version)
        text, signature = self.client.hmget(self._key(task, "v", number), ["card", "signature"])
        if not isinstance(text, bytes):
            raise CorruptArtifact(f"expert {task} v{number} has no stored card")
        self.signatures.check(task, number, text, _bytes(signature))
        return common.parse_card(task, number, text)

    @_unavailable
    def training_set(self, task: str, version: int = 0) -> StoredTrainingSet:
        """The examples a version (0 = default) was fit on, checked against its lineage."""
        number = common.resolve(task, self.task_state(task), version)
        key = self._key(task, "v", number)
        text, data, signature = self.client.hmget(key, ["card", "training_set", "signature"])
        if not isinstance(text, bytes):
            raise CorruptArtifact(f"expert {task} v{number} has no stored card")
        self.signatures.check(task, number, text, _bytes(signature))
        card = common.parse_card(task, number, text)
        if not isinstance(data, bytes):
            raise common.no_training_set(card)
        return common.parse_training_set(card, data)

    @_unavailable
    def versions(self, task: str) -> list[int]:
        """The task's versions, oldest first; empty for an unknown task."""
        pipe = self.client.pipeline(transaction=True)
        pipe.get(self.keys.epoch)
        pipe.smembers(self._key(validate_task(task), "versions"))
        epoch, versions = pipe.execute()
        self.epoch.check(_text(epoch))
        return sorted(map(_int, versions))

    @_unavailable
    def tasks(self) -> list[str]:
        """Every task with at least one version, sorted."""
        pipe = self.client.pipeline(transaction=True)
        pipe.get(self.keys.epoch)
        pipe.smembers(self.keys.tasks)
        epoch, names = pipe.execute()
        self.epoch.check(_text(epoch))
        return sorted(name.decode() for name in names)

    @_unavailable
    def task_state(self, task: str) -> TaskState:
        """Versions, aliases and owner of a task (``NotFound`` when it has no version)."""
        pipe = self.client.pipeline(transaction=True)
        pipe.get(self.keys.epoch)
        pipe.smembers(self._key(validate_task(task), "versions"))
        pipe.hgetall(self._key(task))
        epoch, versions, fields = pipe.execute()
        self.epoch.check(_text(epoch))  # an emptied Redis is no "unknown task" (NOT_FOUND)
        if not versions:
            raise common.unknown_task(task, self.tasks)
        return _task_state(versions, fields)

    @_unavailable
    def state(self) -> RegistryState:
        """Every task's state and the revision it was read at (one round trip per call)."""
        revision = self.revision()
        tasks = self.tasks()
        pipe = self.client.pipeline(transaction=True)
        for task in tasks:
            pipe.smembers(self._key(task, "versions"))
            pipe.hgetall(self._key(task))
        pipe.get(self.keys.epoch)  # emptied between the reads above and these: refuse
        replies = pipe.execute()
        self.epoch.check(_text(replies[-1]))
        states = {
            task: _task_state(replies[2 * i], replies[2 * i + 1])
            for i, task in enumerate(tasks)
            if replies[2 * i]
        }
        return RegistryState(revision, states)

    @_unavailable
    def revision(self) -> int:
        """Counts writes; pollers compare it to skip re-reading every task."""
        revision, epoch = self.client.mget([self.keys.revision, self.keys.epoch])
        self.epoch.check(_text(epoch))
        return _int(revision)

    @_unavailable
    def promote(self, task: str, version: int, alias: str = PRODUCTION) -> tuple[int, int]:
        """Point ``alias`` at ``version`` atomically; returns ``(version, previous or 0)``."""
        alias = common.check_alias(alias)
        if version < 1:
            raise InvalidInput(f"promote needs a version number >= 1, got {version}")
        task_key, versions_key = self._key(validate_task(task)), self._key(task, "versions")

        def commit(pipe: Any) -> tuple[int, int]:
            state = self._watched_state(pipe, task, versions_key, task_key)
            common.resolve(task, state, version)
            previous = state.aliases.get(alias, 0)
            if previous != version:
                self.writer.persist(pipe, task, lambda r: move_alias(r, alias, version))
            pipe.multi()
            if previous != version:
                if previous:
                    pipe.rpush(self._key(task, "history", alias), previous)
                pipe.hset(task_key, f"alias:{alias}", version)
                self._announce(pipe, task)
            return version, previous

        result: tuple[int, int] = self.writer.write(commit, task_key, versions_key)
        return result

    @_unavailable
    def rollback(self, task: str, alias: str = PRODUCTION) -> tuple[int, int]:
        """Point ``alias`` back where it pointed before its last promote; ``(now, before)``."""
        alias = common.check_alias(alias)
        task_key, versions_key = self._key(validate_task(task)), self._key(task, "versions")
        history_key = self._key(task, "history", alias)

        def commit(pipe: Any) -> tuple[int, int]:
            state = self._watched_state(pipe, task, versions_key, task_key)
            earlier = pipe.lindex(history_key, -1)
            if earlier is None:
                raise FailedPrecondition(
                    f"task {task!r} {alias} has no earlier version to roll back to; "
                    "promote a version instead"
                )
            self.writer.persist(pipe, task, lambda r: step_back(r, alias))
            pipe.multi()
            pipe.rpop(history_key)
            pipe.hset(task_key, f"alias:{alias}", _int(earlier))
            self._announce(pipe, task)
            return _int(earlier), state.aliases.get(alias, 0)

        result: tuple[int, int] = self.writer.write(commit, task_key, versions_key, history_key)
        return result

    @_unavailable
    def promote_many(
        self, targets: Mapping[str, int], alias: str = PRODUCTION
    ) -> dict[str, tuple[int, int]]:
        """Point ``alias`` of every task in ``targets`` at its version in one MULTI/EXEC: every
        replica sees all of the moves or none."""
        alias = common.check_alias(alias)
        tasks = _distinct(list(targets))
        bad = sorted(task for task in tasks if targets[task] < 1)
        if bad:
            raise InvalidInput(f"promote needs version numbers >= 1; check {', '.join(bad)}")
        keys = [key for task in tasks for key in (self._key(task), self._key(task, "versions"))]

        def commit(pipe: Any) -> dict[str, tuple[int, int]]:
            moves: dict[str, tuple[int, int]] = {}
            for task in tasks:  # every check before the first write
                state = self._watched_state(
                    pipe, task, self._key(task, "versions"), self._key(task)
                )
                common.resolve(task, state, targets[task])
                moves[task] = (targets[task], state.aliases.get(alias, 0))
            for task, (version, previous) in moves.items():
                if previous != version:
                    self.writer.persist(
                        pipe, task, functools.partial(move_alias, alias=alias, to=version)
                    )
            pipe.multi()
            for task, (version, previous) in moves.items():
                if previous != version:
                    if previous:
                        pipe.rpush(self._key(task, "history", alias), previous)
                    pipe.hset(self._key(task), f"alias:{alias}", version)
                    self._announce(pipe, task)
            return moves

        result: dict[str, tuple[int, int]] = self.writer.write(commit, *keys)
        return result

    @_unavailable
    def rollback_many(
        self, tasks: Sequence[str], alias: str = PRODUCTION
    ) -> dict[str, tuple[int, int]]:
        """``rollback`` of every task in ``tasks`` in one MULTI/EXEC."""
        alias = common.check_alias(alias)
        names = _distinct(list(tasks))
        keys = [
            key
            for task in names
            for key in (
                self._key(task),
                self._key(task, "versions"),
                self._key(task, "history", alias),
            )
        ]

        def commit(pipe: Any) -> dict[str, tuple[int, int]]:
            moves: dict[str, tuple[int, int]] = {}
            for task in names:
                state = self._watched_state(
                    pipe, task, self._key(task, "versions"), self._key(task)
                )
                earlier = pipe.lindex(self._key(task, "history", alias), -1)
                if earlier is None:
                    raise FailedPrecondition(
                        f"task {task!r} {alias} has no earlier version to roll back to; "
                        "promote a version instead"
                    )
                moves[task] = (_int(earlier), state.aliases.get(alias, 0))
            for task in moves:
                self.writer.persist(pipe, task, functools.partial(step_back, alias=alias))
            pipe.multi()
            for task, (version, _) in moves.items():
                pipe.rpop(self._key(task, "history", alias))
                pipe.hset(self._key(task), f"alias:{alias}", version)
                self._announce(pipe, task)
            return moves

        result: dict[str, tuple[int, int]] = self.writer.write(commit, *keys)
        return result

    @_unavailable
    def delete_version(self, task: str, version: int) -> list[int]:
        """Remove a version no alias points to; returns the remaining versions."""
        task_key, versions_key = self._key(validate_task(task)), self._key(task, "versions")
        histories = [self._key(task, "history", alias) for alias in ALIASES]

        def commit(pipe: Any) -> list[int]:
            state = self._watched_state(pipe, task, versions_key, task_key)
            if version not in state.versions:
                raise common.no_version(task, state, version)
            pointing = sorted(a for a, v in state.aliases.items() if v == version)
            if pointing:
                raise FailedPrecondition(
                    f"task {task!r} v{version} is {' and '.join(pointing)}; promote another "
                    "version (or roll back) before deleting it"
                )
            text = pipe.hget(self._key(task, "v", version), "card")
            self.writer.persist(pipe, task, lambda r: drop_version(r, version))
            pipe.multi()
            if text is not None:
                pipe.hdel(self._key(task, "sha"), common.parse_card(task, version, text).sha256)
            pipe.delete(self._key(task, "v", version))
            pipe.srem(versions_key, version)
            for key in histories:
                pipe.lrem(key, 0, version)
            if state.versions == (version,):
                pipe.srem(f"{self.prefix}tasks", task)
            self._announce(pipe, task)
            return [v for v in state.versions if v != version]

        remaining: list[int] = self.writer.write(commit, task_key, versions_key, *histories)
        if self.durable is not None:  # after Redis: the record already lists it no more
            self.durable.remove_version(task, version)
        logger.info("deleted expert %s v%d", task, version)
        return remaining

    def watch(self, on_change: Callable[[], None]) -> ChangeFeed:
        """Call ``on_change`` after every write by any replica (and after each reconnect)."""
        return ChangeFeed(self.client, self.channel, on_change)

    def _production_card(self, pipe: Any, task: str) -> ExpertCard | None:
        """The card of the version the production alias points to (watched by the caller)."""
        number = pipe.hget(self._key(task), f"alias:{PRODUCTION}")
        if number is None:
            return None
        text = pipe.hget(self._key(task, "v", _int(number)), "card")
        return common.parse_card(task, _int(number), text) if text is not None else None

    def _watched_state(self, pipe: Any, task: str, versions_key: str, task_key: str) -> TaskState:
        versions = pipe.smembers(versions_key)
        if not versions:
            raise common.unknown_task(task, self.tasks)
        return _task_state(versions, pipe.hgetall(task_key))

    def _announce(self, pipe: Any, task: str) -> None:
        # Inside MULTI: the revision and the event go out only if the write itself commits.
        pipe.incr(f"{self.prefix}revision")
        pipe.publish(self.channel, task)


def _distinct(tasks: list[str]) -> list[str]:
    """``tasks``, each a valid name named once (and at least one)."""
    if not tasks or len(set(tasks)) != len(tasks):
        raise InvalidInput("name each task once, and at least one")
    return [validate_task(task) for task in tasks]


def _task_state(versions: set[bytes], fields: Mapping[bytes, bytes]) -> TaskState:
    aliases = {
        key.decode().removeprefix("alias:"): _int(value)
        for key, value in fields.items()
        if key.startswith(b"alias:")
    }
    return TaskState(
        versions=tuple(sorted(map(_int, versions))),
        aliases=aliases,
        owner=(fields.get(b"owner") or b"").decode(),
        newest_is_live=False,  # shared by every replica: a version answers once promoted
    )


def without_password(url: str) -> str:
    """``url`` with any password replaced by ``***``."""
    parts = urlsplit(url)
    if parts.password is None:
        return url
    netloc = parts.netloc.replace(f":{parts.password}@", ":***@", 1)
    return urlunsplit(parts._replace(netloc=netloc))
