"""Redis pub/sub change feed: wakes a replica's refresher when any replica writes."""

from __future__ import annotations

import contextlib
import logging
import threading
from collections.abc import Callable

import redis

logger = logging.getLogger(__name__)


class ChangeFeed:
    """Subscribes to the registry's event channel on a daemon thread.

    ``on_change`` runs after every published write and after every (re)subscription, since
    writes made while the connection was down were never delivered to us. It should only
    signal another thread (it runs on the feed's thread). Reconnects back off exponentially.

    Args:
        client: The registry's Redis client (the feed takes its own connection from the pool).
        channel: Channel the registry publishes to.
        on_change: Called with no arguments on every change.
        max_backoff_s: Longest wait between reconnection attempts.
    """

    def __init__(
        self,
        client: redis.Redis,
        channel: str,
        on_change: Callable[[], None],
        *,
        max_backoff_s: float = 2.0,
    ) -> None:
        self._client = client
        self._channel = channel
        self._on_change = on_change
        self._max_backoff_s = max_backoff_s
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="expert-registry-feed", daemon=True)
        self._thread.start()

    def close(self) -> None:
        """Stop listening (returns within about half a second)."""
        self._stop.set()
        self._thread.join(timeout=5.0)

    def _run(self) -> None:
        delay = 0.05
        while not self._stop.is_set():
            pubsub = self._client.pubsub(ignore_subscribe_messages=True)  # type: ignore[no-untyped-call]
            try:
                pubsub.subscribe(self._channel)
                self._on_change()
                if delay > 0.05:
                    logger.info("registry change feed reconnected")
                delay = 0.05
                while not self._stop.is_set():
                    if pubsub.get_message(timeout=0.5) is not None:
                        self._on_change()
            except redis.RedisError as err:
                logger.warning(
                    "registry change feed lost (%s); retrying in %.2f s", type(err).__name__, delay
                )
                self._stop.wait(delay)
                delay = min(delay * 2, self._max_backoff_s)
            finally:
                with contextlib.suppress(redis.RedisError):
                    pubsub.close()
