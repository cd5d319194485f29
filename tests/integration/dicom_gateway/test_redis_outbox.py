"""The Redis outbox (several gateway replicas) keeps the same contract as the SQLite one, and
holds neither patient data nor UIDs in its keys or values."""

from __future__ import annotations

from typing import cast

import pytest
import redis

from dicom_gateway.outbox_key import OutboxKeys
from dicom_gateway.sealed_outbox import SealedOutbox
from tests.unit.dicom_gateway.test_outbox import (
    KEY,
    OTHER_KEY,
    check_nothing_in_clear,
    check_outbox_contract,
)


def sealed_redis(shared_redis: tuple[str, str], keys: OutboxKeys = KEY) -> SealedOutbox:
    from dicom_gateway.redis_outbox import RedisOutbox

    url, prefix = shared_redis
    return SealedOutbox(RedisOutbox(url, prefix.rstrip(":")), keys)


def raw_redis(shared_redis: tuple[str, str]) -> bytes:
    """Every key name, hash field, hash value and sorted-set member under the test's prefix."""
    url, prefix = shared_redis
    client = redis.Redis.from_url(url)
    try:
        found = []
        for name in client.scan_iter(match=f"{prefix}*"):
            found.append(name)
            kind = client.type(name)
            if kind == b"hash":
                for field, value in cast(dict[bytes, bytes], client.hgetall(name)).items():
                    found += [field, value]
            elif kind == b"zset":
                found += cast(list[bytes], client.zrange(name, 0, -1))
        return b"\n".join(found)
    finally:
        client.close()


@pytest.mark.redis
def test_redis_outbox_contract(shared_redis: tuple[str, str]) -> None:
    outbox = sealed_redis(shared_redis)
    try:
        check_outbox_contract(outbox)
    finally:
        outbox.close()


@pytest.mark.redis
def test_redis_outbox_holds_no_patient_data_uid_or_pixels_in_clear(
    shared_redis: tuple[str, str],
) -> None:
    outbox = sealed_redis(shared_redis)
    try:
        check_nothing_in_clear(outbox, lambda: raw_redis(shared_redis))
    finally:
        outbox.close()
    assert b"PHIMARK" not in raw_redis(shared_redis)


@pytest.mark.redis
def test_a_replica_with_another_key_fails_the_jobs_and_counts_them(
    shared_redis: tuple[str, str],
) -> None:
    outbox = sealed_redis(shared_redis)
    outbox.accept("1.2.3", b"instance")
    outbox.close()
    unreadable: list[None] = []
    wrong = sealed_redis(shared_redis, OTHER_KEY)
    wrong.on_unreadable = lambda: unreadable.append(None)
    try:
        assert wrong.claim("received", 5) == [] and unreadable == [None]
        assert wrong.counts()["failed"] == 1 and wrong.backlog() == 0
    finally:
        wrong.close()
    again = sealed_redis(shared_redis)  # the right key again: the job is failed, not redone
    try:
        assert not again.accept("1.2.3", b"instance") and again.claim("received", 5) == []
    finally:
        again.close()


@pytest.mark.redis
def test_two_replicas_never_claim_the_same_job(shared_redis: tuple[str, str]) -> None:
    first, second = sealed_redis(shared_redis), sealed_redis(shared_redis)
    try:
        for n in range(6):
            assert first.accept(f"1.{n}", f"x{n}".encode())
        claimed = [job.payload for job in first.claim("received", 4)]
        claimed += [job.payload for job in second.claim("received", 4)]
        assert sorted(claimed) == [f"x{n}".encode() for n in range(6)]
    finally:
        first.close()
        second.close()
