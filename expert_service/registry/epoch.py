"""The registry epoch: which registry a Redis holds, so an emptied or swapped Redis is noticed.

A random id is written once, when the registry is first created: into the durable copy first
(create-if-absent, so concurrent first starts agree), then into Redis (``SET NX``). Every
replica remembers it. A Redis that comes back empty (restarted without persistence) or holding
another registry's epoch is *degraded*: reads raise ``RegistryDegraded`` (UNAVAILABLE), so a
replica's refresher keeps its last good routes and loaded experts instead of dropping them, and
writes raise ``RegistryWritesRefused`` (FAILED_PRECONDITION) until ``lus registry restore``
rebuilds Redis from the durable copy under the same epoch.

Which epoch counts: the durable copy's when this process has one (it survives Redis), else the
one it first read from Redis. Only a process with a durable copy (the writer) creates the epoch
when it starts, or any process at its first write; a read-only serving replica never writes it.
A serving replica started while Redis is empty, without the copy mounted, cannot tell a lost
registry from a new one and reads it as empty (docs/operations.md, Registry durability).
"""

from __future__ import annotations

import logging
import secrets
import threading
from collections.abc import Callable

from expert_service.registry.durable import DurableCopy
from lus.errors import FailedPrecondition, NotReady

logger = logging.getLogger(__name__)

RESTORE_HINT = (
    "an operator must run `lus registry restore --redis-url URL --durable-dir DIR` "
    "(docs/operations.md, Registry durability)"
)


class RegistryDegraded(NotReady):
    """Redis lost the registry or holds another one; served experts stay as they were."""


class RegistryWritesRefused(FailedPrecondition):
    """A registry write while Redis is degraded: refused until the registry is restored."""


def new_epoch() -> str:
    return secrets.token_hex(16)


def _short(epoch: str | None) -> str:
    return "none" if epoch is None else epoch[:12]


class EpochGuard:
    """Knows the epoch this process serves and checks every epoch Redis shows it.

    Args:
        durable: The durable copy, or None (then the epoch is the one first read from Redis).
        has_data: Whether Redis holds any task now (a registry from before epochs existed).
        publish: Sets the epoch in Redis unless one is set (``SET NX``); returns the one there.
        backfill: Copies what Redis holds into an empty durable copy (first start with one).
    """

    def __init__(
        self,
        durable: DurableCopy | None,
        *,
        has_data: Callable[[], bool],
        publish: Callable[[str], str],
        backfill: Callable[[], None],
    ) -> None:
        self.durable = durable
        self._has_data = has_data
        self._publish = publish
        self._backfill = backfill
        self.expected: str | None = None
        self.degraded = False
        self._lock = threading.Lock()

    def check(self, found: str | None, *, create: bool = False) -> None:
        """Raise ``RegistryDegraded`` unless ``found`` (Redis's epoch now) is the expected one.

        Until this process knows an epoch, the first one seen is adopted. A process without a
        durable copy that finds none yet reads on (a registry nobody wrote to) and creates one
        only when ``create`` (its first write); one with a copy creates it at once.
        """
        if self.expected is None:
            with self._lock:
                if self.expected is None:
                    self.expected, published = self._open(found, create=create)
                    if self.expected is not None:
                        logger.info("expert registry epoch %s", _short(self.expected))
                    if published:
                        found = self.expected  # read before we wrote it: Redis has it now
        if found == self.expected:
            if self.degraded:
                self.degraded = False
                logger.info("expert registry epoch %s is back in Redis", _short(found))
            return
        self.degraded = True
        raise RegistryDegraded(self._explain(found))

    def check_writable(self, found: str | None) -> None:
        """``check`` for a write: raises ``RegistryWritesRefused`` when degraded."""
        try:
            self.check(found, create=True)
        except RegistryDegraded as err:
            raise RegistryWritesRefused(f"registry writes are refused: {err}") from None

    def _open(self, found: str | None, *, create: bool) -> tuple[str | None, bool]:
        """The epoch to expect (None: none anywhere yet, and not ``create``), creating the
        registry's when there is none; and whether it was just put into Redis."""
        kept = self.durable.epoch() if self.durable is not None else None
        if kept is not None:
            return kept, False  # Redis without it (emptied) or another one: degraded, restore
        if found is not None and self.durable is None:
            return found, False
        if self.durable is None and not create:
            return None, False
        # No durable epoch yet: a new registry, a registry from before epochs, or a durable
        # copy switched on for an existing one. Copy what Redis holds, then fix the epoch.
        if found is not None or self._has_data():
            self._backfill()
        epoch = found or new_epoch()
        if self.durable is not None:
            epoch = self.durable.create_epoch(epoch)  # another replica may have won the race
        return self._publish(epoch), True

    def _explain(self, found: str | None) -> str:
        if found is None:
            what = (
                f"the registry's Redis holds no epoch (it came back empty, e.g. restarted "
                f"without persistence); this registry is epoch {_short(self.expected)}"
            )
        else:
            what = (
                f"the registry's Redis holds epoch {_short(found)}, another registry's; this "
                f"one is epoch {_short(self.expected)}"
            )
        if self.durable is None:
            return (
                f"{what}. Loaded experts keep answering; there is no durable copy to restore "
                "from (set LUS_EXPERT_REGISTRY_DURABLE_DIR), so restart the replicas on the "
                "new registry and register the experts again"
            )
        return f"{what}. Loaded experts keep answering; {RESTORE_HINT}"
