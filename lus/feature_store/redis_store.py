"""The deployed feature store: Redis, shared by every replica of both tiers.

Keys (all under one prefix, e.g. ``lus:fs:``), layout 2:

    {prefix}v:{pixel_hash}:{model_version}   the vector's JSON document (``codec``)
    {prefix}h:{pixel_hash}                   sorted set: model versions by creation time
    {prefix}c:{content_sha256}:{decoder}     content entry: the pixels a file decodes to
    {prefix}o:{pixel_hash}:{model_version}   set: the callers that own the vector

The sorted sets answer "newest across versions" without scanning keys. A vector without an
``o:`` set was written before owners were recorded and belongs to the anonymous caller ``""``.

Every key expires ``ttl_s`` after its last write (``LUS_BIOMARKER_FEATURE_STORE_TTL_S``, 30 days
by default): the store is a cache of answers, and old vectors of patients' videos should not
stay for ever. The Redis that holds it should also bound its memory (``maxmemory`` with
``allkeys-lru`` or ``volatile-ttl``): losing an entry costs one recomputation. The expert
registry's Redis must instead never evict (``noeviction``): keep the two apart.

Layout 1 (before issue 10) also kept ``{prefix}u:{sop_instance_uid}``, a sorted set of
"{pixel_hash}:{model_version}" members that answered a file by its UID alone, and a UID inside
each vector document. Nothing reads either any more: ``v:`` documents of layout 1 stay usable by
pixel hash (their UID ignored), and ``u:`` keys are dead. ``scrub_legacy_uids`` deletes the
``u:`` keys and rewrites the old documents without their UID (``python -m
lus.feature_store.migrate``); until it runs they are ignored.
"""

from __future__ import annotations

import json
from datetime import datetime
from typing import Any

import redis

from lus.feature_store import codec
from lus.feature_store.base import ANONYMOUS, StoredContent, StoredVector

DEFAULT_PREFIX = "lus:fs:"
DEFAULT_TTL_S = 30 * 24 * 3600
"""Seconds an entry lives after its last write (30 days)."""
SCAN_BATCH = 500
"""Keys asked for per SCAN step (and deleted per UNLINK) by ``scrub_legacy_uids``."""


def _score(created_at: str) -> float:
    """Seconds since the epoch; unparseable times sort first rather than fail the write."""
    try:
        return datetime.fromisoformat(created_at).timestamp()
    except ValueError:
        return 0.0


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


class RedisFeatureStore:
    """``FeatureStore`` over a Redis server (``redis`` client, synchronous)."""

    def __init__(
        self, client: redis.Redis, *, prefix: str = DEFAULT_PREFIX, ttl_s: int = DEFAULT_TTL_S
    ) -> None:
        """Use an existing client; ``from_url`` builds one.

        Args:
            client: a ``redis.Redis`` (bytes responses are fine).
            prefix: namespace of every key this store writes; tests use a unique one.
            ttl_s: seconds each key lives after its last write; 0 = no expiry.
        """
        if ttl_s < 0:
            raise ValueError("ttl_s must be 0 (no expiry) or more")
        self._redis = client
        self.prefix = prefix
        self.ttl_s = ttl_s

    @classmethod
    def from_url(
        cls,
        url: str,
        *,
        prefix: str = DEFAULT_PREFIX,
        timeout_s: float = 2.0,
        ttl_s: int = DEFAULT_TTL_S,
    ) -> RedisFeatureStore:
        """Connect lazily to ``redis://host:port/db`` with socket timeouts on every call."""
        client = redis.Redis.from_url(
            url, socket_timeout=timeout_s, socket_connect_timeout=timeout_s
        )
        return cls(client, prefix=prefix, ttl_s=ttl_s)

    def _expire(self, pipe: Any, key: str) -> None:
        if self.ttl_s:
            pipe.expire(key, self.ttl_s)

    def _owners_key(self, pixel_hash: str, model_version: str) -> str:
        return f"{self.prefix}o:{pixel_hash}:{model_version}"

    def _vector_key(self, pixel_hash: str, model_version: str) -> str:
        return f"{self.prefix}v:{pixel_hash}:{model_version}"

    def _content_key(self, content_sha256: str, decoder: str) -> str:
        return f"{self.prefix}c:{content_sha256}:{decoder}"

    def _load(self, key: str) -> StoredVector | None:
        document: Any = self._redis.get(key)
        return None if document is None else codec.decode(document)

    def get(self, pixel_hash: str, model_version: str | None = None) -> StoredVector | None:
        """The vector for a video hash; the newest across versions when model_version is None."""
        if model_version is None:
            newest: Any = self._redis.zrevrange(f"{self.prefix}h:{pixel_hash}", 0, 0)
            if not newest:
                return None
            model_version = _text(newest[0])
        return self._load(self._vector_key(pixel_hash, str(model_version)))

    def put(self, item: StoredVector) -> None:
        """Store (or overwrite) the entry for ``(item.pixel_hash, item.model_version)``."""
        document = codec.encode(item)
        pipe = self._redis.pipeline(transaction=True)  # readers never see half an entry
        pipe.set(
            self._vector_key(item.pixel_hash, item.model_version), document, ex=self.ttl_s or None
        )
        score = _score(item.created_at)
        versions = f"{self.prefix}h:{item.pixel_hash}"
        pipe.zadd(versions, {item.model_version: score})
        self._expire(pipe, versions)
        self._expire(pipe, self._owners_key(item.pixel_hash, item.model_version))
        pipe.execute()

    def add_owner(self, pixel_hash: str, model_version: str, caller: str) -> None:
        """Record ``caller`` as an owner of the vector ``(pixel_hash, model_version)``."""
        key = self._owners_key(pixel_hash, model_version)
        pipe = self._redis.pipeline(transaction=True)
        pipe.sadd(key, caller)
        self._expire(pipe, key)
        pipe.execute()

    def owns(self, pixel_hash: str, model_version: str, caller: str) -> bool:
        """Whether ``caller`` had the vector ``(pixel_hash, model_version)`` computed.

        A vector with no owner set at all predates owners: the anonymous caller's.
        """
        key = self._owners_key(pixel_hash, model_version)
        pipe = self._redis.pipeline(transaction=False)
        pipe.sismember(key, caller)
        pipe.exists(key)
        member, exists = pipe.execute()
        if exists:
            return bool(member)
        if caller != ANONYMOUS:
            return False
        return bool(self._redis.exists(self._vector_key(pixel_hash, model_version)))

    def get_content(self, content_sha256: str, decoder: str) -> StoredContent | None:
        """What a file with these bytes decoded to under ``decoder``, if it was seen."""
        document: Any = self._redis.get(self._content_key(content_sha256, decoder))
        return None if document is None else codec.decode_content(document)

    def put_content(self, item: StoredContent) -> None:
        """Store (or overwrite) the entry for ``(item.content_sha256, item.decoder)``."""
        document = codec.encode_content(item)
        key = self._content_key(item.content_sha256, item.decoder)
        self._redis.set(key, document, ex=self.ttl_s or None)

    def scrub_legacy_uids(self) -> tuple[int, int]:
        """Delete layout 1's UID index and drop the UID from layout 1's vector documents.

        Safe while replicas serve: neither is read any more, and each document is rewritten
        only if it is unchanged since it was read (``WATCH``), so a newer write is never lost.

        Returns:
            ``(uid_keys_deleted, documents_rewritten)``.
        """
        deleted = 0
        batch: list[Any] = []
        for key in self._redis.scan_iter(match=f"{self.prefix}u:*", count=SCAN_BATCH):
            batch.append(key)
            if len(batch) >= SCAN_BATCH:
                deleted += int(self._redis.unlink(*batch))
                batch = []
        if batch:
            deleted += int(self._redis.unlink(*batch))
        rewritten = 0
        for key in self._redis.scan_iter(match=f"{self.prefix}v:*", count=SCAN_BATCH):
            rewritten += self._drop_uid(key)
        return deleted, rewritten

    def _drop_uid(self, key: Any) -> int:
        with self._redis.pipeline(transaction=True) as pipe:
            try:
                pipe.watch(key)  # type: ignore[no-untyped-call]  # redis-py leaves it untyped
                document: Any = pipe.get(key)
                if document is None:
                    return 0
                data = json.loads(document)
                if "sop_instance_uid" not in data:
                    return 0
                del data["sop_instance_uid"]
                pipe.multi()
                pipe.set(key, json.dumps(data, separators=(",", ":")))
                pipe.execute()
            except redis.WatchError:  # rewritten meanwhile, by a writer that stores no UID
                return 0
        return 1

    def close(self) -> None:
        """Release the connection pool."""
        self._redis.close()

    def __repr__(self) -> str:
        return f"RedisFeatureStore(prefix={self.prefix!r})"
