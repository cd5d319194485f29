"""Hot reload: keeps a runner's routes in step with the registry that other replicas write to.

Two triggers wake one refresher thread: the registry's push feed (Redis pub/sub; a folder has
none) and a periodic re-sync, the safety net for missed messages. A refresh reads the revision
first and does nothing when it has not changed, so the periodic poll costs one small read.
When the registry is unreachable the refresher backs off exponentially; loaded experts keep
answering meanwhile, and the first successful refresh re-syncs everything.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable

from expert_service.predictor import ExpertPredictor
from expert_service.registry.base import Subscription

logger = logging.getLogger(__name__)


class RegistryWatcher:
    """Runs ``runner.refresh()`` on every change notice and every ``resync_interval_s``.

    Args:
        runner: The runner whose routes to keep current.
        resync_interval_s: Seconds between polls of the registry's revision.
        max_backoff_s: Longest wait between attempts while the registry is unreachable.
        on_synced: Called once, on the refresher thread, after the first successful refresh
            (a server that could not load its experts at start turns SERVING then).
    """

    def __init__(
        self,
        runner: ExpertPredictor,
        *,
        resync_interval_s: float = 1.0,
        max_backoff_s: float = 5.0,
        on_synced: Callable[[], None] | None = None,
    ) -> None:
        self.runner = runner
        self.on_synced = on_synced
        self.resync_interval_s = resync_interval_s
        self.max_backoff_s = max_backoff_s
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

    def _run(self) -> None:
        delay = self.resync_interval_s
        failing = False
        while not self._stop.is_set():
            self._wake.wait(timeout=delay)
            self._wake.clear()
            if self._stop.is_set():
                return
            try:
                if self.runner.refresh():
                    logger.debug("expert routes refreshed")
                if self.on_synced is not None:
                    synced, self.on_synced = self.on_synced, None
                    synced()
            except Exception as err:  # keep the thread alive whatever the store raised
                delay = min(max(delay, self.resync_interval_s) * 2, self.max_backoff_s)
                if not failing:
                    logger.warning("registry re-sync failed (%s); retrying with backoff", err)
                failing = True
                continue
            if failing:
                logger.info("registry reachable again; routes re-synced")
            failing, delay = False, self.resync_interval_s
