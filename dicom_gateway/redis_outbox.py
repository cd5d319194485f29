"""The outbox in Redis, for several gateway replicas sharing one queue (``outbox=redis``).

A job is a hash ``{prefix}:job:{key}``; the jobs due in a state are a sorted set
``{prefix}:due:{state}`` scored by when they are next due. Claiming a job moves its score
``LEASE_S`` ahead, so no other replica takes it meanwhile and a crashed replica's jobs come due
again. Every transition is one Lua script (atomic). A finished job keeps its hash (without
payload) for ``DONE_TTL_S``, so a re-sent instance is recognised for that long. Job ids are
keyed hashes and payloads are sealed (``SealedOutbox``): no key name or value holds a UID or
patient data.
"""

from __future__ import annotations

import time
from typing import Literal, cast

import redis

from dicom_gateway.outbox import LEASE_S, STATES, Job, State

DONE_TTL_S = 30 * 24 * 3600
"""How long a sent or failed job's record is kept to recognise re-sent instances: 30 days."""

ACCEPT = """
if redis.call('EXISTS', KEYS[1]) == 1 then return 0 end
redis.call('HSET', KEYS[1], 'state', 'received', 'attempts', 0, 'payload', ARGV[1])
redis.call('ZADD', KEYS[2], ARGV[2], ARGV[3])
return 1
"""

CLAIM = """
local due = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', ARGV[1], 'LIMIT', 0, ARGV[2])
for _, key in ipairs(due) do redis.call('ZADD', KEYS[1], ARGV[3], key) end
return due
"""

ANALYSED = """
redis.call('HSET', KEYS[1], 'state', 'pending', 'attempts', 0, 'payload', ARGV[1])
redis.call('ZREM', KEYS[2], ARGV[3])
redis.call('ZADD', KEYS[3], ARGV[2], ARGV[3])
"""

FINISH = """
redis.call('HSET', KEYS[1], 'state', ARGV[1])
redis.call('HDEL', KEYS[1], 'payload')
redis.call('ZREM', KEYS[2], ARGV[2])
redis.call('ZREM', KEYS[4], ARGV[2])
redis.call('EXPIRE', KEYS[1], ARGV[3])
redis.call('HINCRBY', KEYS[3], ARGV[1], 1)
"""

RETRY = """
local state = redis.call('HGET', KEYS[1], 'state')
if not state then return 'dead' end
local attempts = redis.call('HINCRBY', KEYS[1], 'attempts', 1)
if attempts >= tonumber(ARGV[2]) then
  redis.call('HSET', KEYS[1], 'state', 'dead')
  redis.call('ZREM', KEYS[2] .. state, ARGV[3])
  redis.call('HINCRBY', KEYS[3], 'dead', 1)
  return 'dead'
end
redis.call('ZADD', KEYS[2] .. state, ARGV[1], ARGV[3])
return state
"""


class RedisOutbox:
    """``Outbox`` over Redis; see the module docstring for the layout."""

    def __init__(self, url: str, prefix: str) -> None:
        self._redis = redis.Redis.from_url(url)
        self._prefix = prefix
        self._accept = self._redis.register_script(ACCEPT)
        self._claim = self._redis.register_script(CLAIM)
        self._analysed = self._redis.register_script(ANALYSED)
        self._finish_script = self._redis.register_script(FINISH)
        self._retry = self._redis.register_script(RETRY)
        try:
            self._redis.ping()  # an unreachable Redis stops the start
        except redis.RedisError as err:  # the builtin (an OSError) ends the start with exit 2
            raise ConnectionError(
                f"cannot reach the outbox Redis ({type(err).__name__}); check"
                " LUS_GATEWAY_OUTBOX_REDIS_URL and that the server answers"
            ) from None

    def _job(self, key: str) -> str:
        return f"{self._prefix}:job:{key}"

    def _due(self, state: str) -> str:
        return f"{self._prefix}:due:{state}"

    @property
    def _counts_key(self) -> str:
        return f"{self._prefix}:counts"

    def accept(self, key: str, instance: bytes) -> bool:
        keys = [self._job(key), self._due("received")]
        return bool(self._accept(keys=keys, args=[instance, time.time(), key]))

    def backlog(self) -> int:
        return int(self._redis.zcard(self._due("received")))

    def claim(self, state: Literal["received", "pending"], limit: int) -> list[Job]:
        now = time.time()
        keys = self._claim(keys=[self._due(state)], args=[now, limit, now + LEASE_S])
        jobs = []
        for raw in cast(list[bytes], keys):
            key = raw.decode()
            fields = cast(
                list[bytes | None],
                self._redis.hmget(self._job(key), ["state", "attempts", "payload"]),
            )
            if fields[0] is None or fields[0].decode() != state or fields[2] is None:
                self._redis.zrem(self._due(state), key)  # a stale entry: nothing to do
                continue
            found_state = cast(State, fields[0].decode())
            jobs.append(Job(key, found_state, int(fields[1] or 0), fields[2]))
        return jobs

    def analysed(self, key: str, report: bytes) -> None:
        keys = [self._job(key), self._due("received"), self._due("pending")]
        self._analysed(keys=keys, args=[report, time.time(), key])

    def acknowledged(self, key: str) -> None:
        self._finish(key, "sent")

    def fail(self, key: str) -> None:
        self._finish(key, "failed")  # received, or pending whose report does not open

    def _finish(self, key: str, state: State) -> None:
        keys = [self._job(key), self._due("received"), self._counts_key, self._due("pending")]
        self._finish_script(keys=keys, args=[state, key, DONE_TTL_S])

    def retry(self, key: str, delay_s: float, max_attempts: int) -> State:
        keys = [self._job(key), f"{self._prefix}:due:", self._counts_key]
        new = self._retry(keys=keys, args=[time.time() + delay_s, max_attempts, key])
        return cast(State, new.decode() if isinstance(new, bytes) else str(new))

    def counts(self) -> dict[State, int]:
        done = cast(dict[bytes, bytes], self._redis.hgetall(self._counts_key))
        found = {state: int(done.get(state.encode(), 0)) for state in STATES}
        found["received"] = self.backlog()
        found["pending"] = int(self._redis.zcard(self._due("pending")))
        return found

    def close(self) -> None:
        self._redis.close()
