"""Hot reload: keeps a runner's routes in step with the registry that other replicas write to.

Two triggers wake one refresher thread: the registry's push feed (Redis pub/sub; a folder has
none) and a periodic re-sync, the safety net for missed messages. A refresh reads the revision
first and does nothing when it has not changed, so the periodic poll costs one small read.
When the registry is unreachable the refresher backs off exponentially; loaded experts keep
answering meanwhile, and the first successful refresh re-syncs everything.

Every failure is counted (``SyncObserver``, the server's metrics) and logged with its
traceback, at most once per ``log_interval_s`` for each exception type: a registry down for an
hour logs one traceback a minute, not one per retry, yet a new kind of failure is logged at once.
A degraded registry (Redis emptied or swapped: ``registry.epoch``) is no bug to trace: it logs
one ERROR line saying what to run, at the same rate.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from typing import Protocol

from expert_service.predictor import ExpertPredictor
from expert_service.registry.base import Subscription
from expert_service.registry.epoch import RegistryDegraded

logger = logging.getLogger(__name__)


class SyncObserver(Protocol):
    """Told the outcome of every refresh (``expert_service.metrics.ExpertMetrics``)."""

    def sync_succeeded(self, *, changed: bool) -> None: ...

    def sync_failed(self, err: BaseException) -> None: ...


class RegistryWatcher:
    """Runs ``runner.refresh()`` on every change notice and every ``resync_interval_s``.

    Args:
        runner: The runner whose routes to keep current.
        resync_interval_s: Seconds between polls of the registry's revision.
        max_backoff_s: Longest wait between attempts while the registry is unreachable.
        on_synced: Called once, on the refresher thread, after the first successful refresh
            (a server that could not load its experts at start turns SERVING then).
        observer: Told every refresh's outcome (metrics); None tells nobody.
        log_interval_s: Least seconds between two tracebacks of the same exception type.
        clock: Monotonic seconds, for the log rate limit (tests pass a fake one).
    """

    def __init__(
        self,
        runner: ExpertPredictor,
        *,
        resync_interval_s: float = 1.0,
        max_backoff_s: float = 5.0,
        on_synced: Callable[[], None] | None = None,
        observer: SyncObserver | None = None,
        log_interval_s: float = 60.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.runner = runner
        self.on_synced = on_synced
        self.observer = observer
        self.resync_interval_s = resync_interval_s
        self.max_backoff_s = max_backoff_s
        self.log_interval_s = log_interval_s
        self._clock = clock
        self._logged: dict[type[BaseException], float] = {}  # exception type -> last logged
        self._failing = False
        self._degraded = False
        self._delay = resync_interval_s
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="expert-registry-sync", daemon=True)
        self._subscription: Subscription | None = None

    def start(self) -> None:
        """Subscribe to changes and start the refresher thread."""
        self._subscription = self.runner.registry.watch(self._wake.set)
        self._thread.start()

    def close(self) -> None:
        """Stop both triggers and wait for the refresher to finish its current refresh."""
        self._stop.set()
        self._wake.set()
        if self._subscription is not None:
            self._subscription.close()
        if self._thread.is_alive():
            self._thread.join(timeout=10.0)

    def sync_once(self) -> bool:
        """One refresh, as the refresher thread runs it: counted, logged, never raising.

        Returns:
            Whether it succeeded. The thread's next wait (``delay_s``) doubles after each
            failure, up to ``max_backoff_s``, and falls back to ``resync_interval_s`` after a
            success.
        """
        try:
            changed = self.runner.refresh()
        except Exception as err:  # keep the thread alive whatever the store raised
            self._delay = min(max(self._delay, self.resync_interval_s) * 2, self.max_backoff_s)
            self._failing = True
            self._degraded = self._degraded or isinstance(err, RegistryDegraded)
            if self.observer is not None:
                self.observer.sync_failed(err)
            self._log_failure(err)
            return False
        if changed:
            logger.debug("expert routes refreshed")
        if self.observer is not None:
            self.observer.sync_succeeded(changed=changed)
        if self.on_synced is not None:
            synced, self.on_synced = self.on_synced, None
            try:
                synced()
            except Exception:  # a callback's bug must not stop hot reload
                logger.exception("on_synced callback failed")
        if self._failing:
            if self._degraded:
                logger.warning("expert registry restored (epoch matches again); routes re-synced")
            else:
                logger.info("registry reachable again; routes re-synced")
            self._logged.clear()  # the next outage logs its first traceback at once
        self._failing, self._degraded, self._delay = False, False, self.resync_interval_s
        return True

    @property
    def delay_s(self) -> float:
        """Seconds the refresher waits before its next attempt (unless woken by a change)."""
        return self._delay

    def _log_failure(self, err: Exception) -> None:
        # Rate-limited per type, not per message: messages carry changing details (addresses,
        # counts) and would defeat the limit; types are few.
        kind = type(err)
        now = self._clock()
        last = self._logged.get(kind)
        if last is not None and now - last < self.log_interval_s:
            logger.debug("registry re-sync failed again (%s: %s)", kind.__name__, err)
            return
        self._logged[kind] = now
        if isinstance(err, RegistryDegraded):
            logger.error(
                "expert registry degraded: %s. Next such message in %.0f s at the earliest",
                err,
                self.log_interval_s,
            )
            return
        logger.exception(
            "registry re-sync failed (%s: %s); retrying with backoff up to %.0f s; routes and "
            "loaded experts stay as they were. Further %s failures: one traceback per %.0f s",
            kind.__name__,
            err,
            self.max_backoff_s,
            kind.__name__,
            self.log_interval_s,
        )

    def _run(self) -> None:
        while not self._stop.is_set():
            self._wake.wait(timeout=self._delay)
            self._wake.clear()
            if self._stop.is_set():
                return
            self.sync_once()
