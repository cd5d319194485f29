"""The deployed feature store: Redis, shared by every replica of both tiers.

Keys (all under one prefix, e.g. ``lus:fs:``):

    {prefix}v:{pixel_hash}:{model_version}   the JSON document (``codec``)
    {prefix}h:{pixel_hash}                   sorted set: model versions by creation time
    {prefix}u:{sop_instance_uid}             sorted set: "{pixel_hash}:{model_version}" by time

The sorted sets answer "newest across versions" without scanning keys.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

import redis

from lus.feature_store import codec
from lus.feature_store.base import StoredVector

DEFAULT_PREFIX = "lus:fs:"


def _score(created_at: str) -> float:
    """Seconds since the epoch; unparseable times sort first rather than fail the write."""
    try:
        return datetime.fromisoformat(created_at).timestamp()
    except ValueError:
        return 0.0


class RedisFeatureStore:
    """``FeatureStore`` over a Redis server (``redis`` client, synchronous)."""

    def __init__(self, client: redis.Redis, *, prefix: str = DEFAULT_PREFIX) -> None:
        """Use an existing client; ``from_url`` builds one.

        Args:
            client: a ``redis.Redis`` (bytes responses are fine).
            prefix: namespace of every key this store writes; tests use a unique one.
        """
        self._redis = client
        self.prefix = prefix

    @classmethod
    def from_url(
        cls, url: str, *, prefix: str = DEFAULT_PREFIX, timeout_s: float = 2.0
    ) -> RedisFeatureStore:
        """Connect lazily to ``redis://host:port/db`` with socket timeouts on every call."""
        client = redis.Redis.from_url(
            url, socket_timeout=timeout_s, socket_connect_timeout=timeout_s
        )
        return cls(client, prefix=prefix)

    def _vector_key(self, pixel_hash: str, model_version: str) -> str:
        return f"{self.prefix}v:{pixel_hash}:{model_version}"

    def _load(self, key: str) -> StoredVector | None:
        document: Any = self._redis.get(key)
        return None if document is None else codec.decode(document)

    def get(self, pixel_hash: str, model_version: str | None = None) -> StoredVector | None:
        """The vector for a video hash; the newest across versions when model_version is None."""
        if model_version is None:
            newest: Any = self._redis.zrevrange(f"{self.prefix}h:{pixel_hash}", 0, 0)
            if not newest:
                return None
            model_version = newest[0].decode() if isinstance(newest[0], bytes) else newest[0]
        return self._load(self._vector_key(pixel_hash, str(model_version)))

    def find_by_sop_instance_uid(
        self, uid: str, model_version: str | None = None
    ) -> StoredVector | None:
        """The vector stored for a DICOM object, if any (newest first)."""
        if not uid:
            return None
        members: Any = self._redis.zrevrange(f"{self.prefix}u:{uid}", 0, -1)
        for member in members:
            text = member.decode() if isinstance(member, bytes) else str(member)
            pixel_hash, _, version = text.partition(":")
            if model_version is None or version == model_version:
                return self._load(self._vector_key(pixel_hash, version))
        return None

    def put(self, item: StoredVector) -> None:
        """Store (or overwrite) the entry for ``(item.pixel_hash, item.model_version)``."""
        document = codec.encode(item)
        score = _score(item.created_at)
        pipe = self._redis.pipeline(transaction=True)  # readers never see half an entry
        pipe.set(self._vector_key(item.pixel_hash, item.model_version), document)
        pipe.zadd(f"{self.prefix}h:{item.pixel_hash}", {item.model_version: score})
        if item.sop_instance_uid:
            member = f"{item.pixel_hash}:{item.model_version}"
            pipe.zadd(f"{self.prefix}u:{item.sop_instance_uid}", {member: score})
        pipe.execute()

    def close(self) -> None:
        """Release the connection pool."""
        self._redis.close()

    def __repr__(self) -> str:
        return f"RedisFeatureStore(prefix={self.prefix!r})"
