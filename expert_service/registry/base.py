"""The registry contract every store (local folder, Redis) implements, and its value types."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Protocol, runtime_checkable

from expert_service.card import ExpertCard, ExpertDraft

if TYPE_CHECKING:
    from expert_service.training_set import StoredTrainingSet

PRODUCTION = "production"
STAGING = "staging"
ALIASES = (PRODUCTION, STAGING)
"""The aliases a task may have; ``production`` is what ``version=0`` serves once set."""


@dataclass(frozen=True)
class TaskState:
    """Where a task's aliases point and which versions exist.

    Attributes:
        versions: Stored versions, oldest first (deleted numbers are never reused).
        aliases: Alias -> version, e.g. ``{"production": 3}``.
        owner: The team that registered the task's first version; only it may change the task.
        newest_is_live: Whether the newest version answers ``version=0`` while no production
            alias is set: True in the embedded local registry (one user, ``lus train expert``
            then ``lus serve``); False in the shared Redis registry, where a version answers
            only once someone promoted it.
    """

    versions: tuple[int, ...]
    aliases: Mapping[str, int] = field(default_factory=dict)
    owner: str = ""
    newest_is_live: bool = True

    def default_version(self) -> int | None:
        """The version a card read of ``version=0`` shows: the production alias, else the
        newest (so an unpromoted version can be reviewed before it goes live)."""
        return self.aliases.get(PRODUCTION) or (self.versions[-1] if self.versions else None)

    def live_version(self) -> int | None:
        """What Predict with ``version=0`` and no alias answers with; None when nothing is live
        (a shared registry whose task was never promoted)."""
        if PRODUCTION in self.aliases:
            return self.aliases[PRODUCTION]
        return self.versions[-1] if self.versions and self.newest_is_live else None


@dataclass(frozen=True)
class RegistryState:
    """A consistent-enough snapshot for routing: every task's state at one revision.

    Attributes:
        revision: Counts up on every write; equal revisions mean nothing changed.
        tasks: Task -> state, for tasks with at least one version.
    """

    revision: int
    tasks: Mapping[str, TaskState]


class Subscription(Protocol):
    """A change subscription; ``close()`` ends it."""

    def close(self) -> None: ...


class NoSubscription:
    """For stores that cannot push changes: servers then rely on polling ``revision()``."""

    def close(self) -> None:
        """Nothing to stop."""


@runtime_checkable
class ExpertRegistry(Protocol):
    """Stores experts by ``(task, version)``; a stored version never changes.

    Versions count up from 1 per task and a number is never given out twice, even after a
    delete; ``version=0`` in a read means the default one (production alias, else newest).
    Errors come from ``lus.errors``: ``InvalidInput`` (bad task name or alias, bytes that are not
    a fitting ONNX model, classes not in the model's own order, no lineage, metric names outside
    ``card.METRIC_NAMES``), ``NotFound`` (unknown task or version, naming the known ones; no
    production version yet in a registry whose newest version is not live),
    ``AlreadyExists`` (the same model bytes are already a version of the task),
    ``PermissionDenied`` (registering onto another owner's task), ``FailedPrecondition``
    (deleting a version an alias points to, rolling back with no history, another class set
    than the live version's without ``allow_class_change``), ``NotReady`` (the store is
    unreachable; nothing was written) and ``expert_service.errors.CorruptArtifact`` (stored
    bytes no longer match their sha256; its ``signing.UntrustedExpert``: a version without a
    valid signature). The Redis store adds ``epoch.RegistryDegraded`` (a ``NotReady``: Redis
    emptied or holding another registry) on reads and ``epoch.RegistryWritesRefused`` (a
    ``FailedPrecondition``: restore first) on writes.
    """

    def register(self, draft: ExpertDraft, *, owner: str) -> ExpertCard:
        """Validate ``draft``'s model, store it as its task's next version and return its card.

        Model and card are committed together or not at all. The first registration of a task
        makes ``owner`` its owner (empty: no owner yet); a later one with another non-empty
        owner is refused. A version whose class set differs from the live version's needs
        ``draft.allow_class_change`` and never goes live by being registered: where the newest
        version would be live, production is pinned to the version answering before it.
        """
        ...

    def get(self, task: str, version: int = 0) -> tuple[ExpertCard, bytes]:
        """The card and ONNX bytes of a version (0 = default), verified against the sha256."""
        ...

    def card(self, task: str, version: int = 0) -> ExpertCard:
        """The card of a version (0 = default) without reading the model."""
        ...

    def training_set(self, task: str, version: int = 0) -> StoredTrainingSet:
        """The examples a version (0 = default) was fit on, checked against its lineage's
        ``training_set_sha256``; ``NotFound`` when it was registered without them."""
        ...

    def versions(self, task: str) -> list[int]:
        """The task's versions, oldest first; empty for an unknown task."""
        ...

    def tasks(self) -> list[str]:
        """Every task with at least one version, sorted."""
        ...

    def task_state(self, task: str) -> TaskState:
        """Versions, aliases and owner of a task (``NotFound`` when it has no version)."""
        ...

    def state(self) -> RegistryState:
        """Every task's state and the revision it was read at."""
        ...

    def revision(self) -> int:
        """A number that changes whenever anything is written (cheap: polled for changes)."""
        ...

    def promote(self, task: str, version: int, alias: str = PRODUCTION) -> tuple[int, int]:
        """Point ``alias`` at ``version`` atomically; returns ``(version, previous or 0)``."""
        ...

    def rollback(self, task: str, alias: str = PRODUCTION) -> tuple[int, int]:
        """Point ``alias`` back where it pointed before its last promote; ``(now, before)``."""
        ...

    def promote_many(
        self, targets: Mapping[str, int], alias: str = PRODUCTION
    ) -> dict[str, tuple[int, int]]:
        """Point ``alias`` of every task in ``targets`` at its version, all or none (a release:
        a biomarker model's experts go live together); task -> ``(version, previous or 0)``.

        Every move is checked before any is made. Redis applies them in one MULTI/EXEC, so
        every reader sees all or none; the local folder writes them one by one under every
        task's lock and restores those written if a later one fails.
        """
        ...

    def rollback_many(
        self, tasks: Sequence[str], alias: str = PRODUCTION
    ) -> dict[str, tuple[int, int]]:
        """``rollback`` of every task in ``tasks``, all or none, as ``promote_many`` moves
        them; task -> ``(now, before)``."""
        ...

    def delete_version(self, task: str, version: int) -> list[int]:
        """Remove a version no alias points to; returns the remaining versions."""
        ...

    def watch(self, on_change: Callable[[], None]) -> Subscription:
        """Call ``on_change`` (from another thread) when any writer changes the registry.

        Stores that cannot push changes return a ``NoSubscription``; readers poll ``revision()``.
        """
        ...
