"""Copies between a Redis registry and its durable copy: ``backfill`` (Redis -> copy, when a copy
is first switched on) and ``restore`` (copy -> Redis, ``lus registry restore``)."""

from __future__ import annotations

import hashlib
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from expert_service.errors import CorruptArtifact
from expert_service.registry import common
from expert_service.registry.durable import DurableCopy, TaskRecord
from expert_service.registry.redis_keys import RedisKeys, read_record
from expert_service.registry.signing import SignaturePolicy, UntrustedExpert
from lus.errors import FailedPrecondition

logger = logging.getLogger(__name__)

_FIELDS = ("card", "model", "training_set", "signature")
RESTORE_LOCK_S = 600.0
"""Longest a restore holds the registry's write lock."""


def backfill(client: Any, keys: RedisKeys, durable: DurableCopy | None) -> None:
    """Copy every task and version Redis holds into ``durable`` (nothing without one)."""
    if durable is None:
        return
    tasks = sorted(name.decode() for name in client.smembers(keys.tasks))
    versions = 0
    for task in tasks:
        record = read_record(client, keys, task)
        for version in record.versions:
            stored = client.hgetall(keys.version(task, version))
            fields = {name: stored[name.encode()] for name in _FIELDS if name.encode() in stored}
            durable.write_version(task, version, fields)
            versions += 1
        durable.write_task(task, record)
    if tasks:
        logger.warning(
            "durable copy was empty: copied %d task(s), %d version(s) from Redis into %r",
            len(tasks),
            versions,
            durable,
        )


@dataclass
class RestoreSummary:
    """What ``restore`` wrote, and what it left out (and why)."""

    epoch: str
    tasks: int = 0
    versions: int = 0
    bytes: int = 0
    skipped: list[str] = field(default_factory=list)
    """``task vN: reason`` of each version not restored."""
    seconds: float = 0.0
    already: bool = False
    """Redis already held this registry (its epoch): nothing was written."""


def restore(
    client: Any,
    keys: RedisKeys,
    durable: DurableCopy,
    signatures: SignaturePolicy,
    *,
    force: bool = False,
    progress: Callable[[str], None] = print,
) -> RestoreSummary:
    """Rebuild the registry in Redis from ``durable``, under the durable copy's epoch.

    The epoch is written last, in the same MULTI as the new revision: replicas keep refusing
    reads until every task is back, then see all of it at once and re-sync. Versions whose
    signature (per ``signatures``) or model hash fails are left out, and aliases pointing at
    them dropped; the summary lists them.

    Raises:
        FailedPrecondition: The copy has no epoch; or Redis holds another registry (another
            epoch, or keys without an epoch) and ``force`` is not set.
    """
    started = time.monotonic()
    epoch = durable.epoch()
    if epoch is None:
        raise FailedPrecondition(
            f"{durable!r} holds no registry epoch: it is not a registry's durable copy "
            "(LUS_EXPERT_REGISTRY_DURABLE_DIR of the replicas)"
        )
    summary = RestoreSummary(epoch)
    # The registry's own write lock: no replica write (with --force on a live registry) can
    # land between the clearing and the epoch.
    with client.lock(keys.write_lock, timeout=RESTORE_LOCK_S, blocking_timeout=30.0):
        if not _clear_target(client, keys, epoch, force=force):
            summary.already = True
            return summary
        for task in durable.tasks():
            record = durable.task(task)
            if record is not None:
                _restore_task(
                    client,
                    keys,
                    task,
                    record,
                    durable=durable,
                    signatures=signatures,
                    summary=summary,
                    progress=progress,
                )
        pipe = client.pipeline(transaction=True)
        # Past any revision a replica has seen (milliseconds since 1970 outgrow any write
        # count), so every replica rebuilds its routes; then the epoch, which lets them read.
        revision = max(int(client.get(keys.revision) or 0) + 1, int(time.time() * 1000))
        pipe.set(keys.revision, revision)
        pipe.set(keys.epoch, epoch)
        pipe.publish(keys.events, "*")
        pipe.execute()
    summary.seconds = time.monotonic() - started
    return summary


def _clear_target(client: Any, keys: RedisKeys, epoch: str, *, force: bool) -> bool:
    """Empty the prefix for the restore; False when Redis holds this registry already."""
    found = client.get(keys.epoch)
    if found is not None and found.decode() == epoch and not force:
        return False
    others = [k for k in client.scan_iter(match=f"{keys.prefix}*") if k != keys.write_lock.encode()]
    if found is not None and found.decode() != epoch and not force:
        raise FailedPrecondition(
            f"Redis holds another registry (epoch {found.decode()[:12]}, the copy's is "
            f"{epoch[:12]}) under prefix {keys.prefix!r}; pass --force to replace it"
        )
    if found is None and others and not force:
        raise FailedPrecondition(
            f"Redis holds {len(others)} key(s) under prefix {keys.prefix!r} but no registry "
            "epoch (a restore that stopped half way?); pass --force to replace them"
        )
    if others:
        # One DEL, the epoch with the rest: replicas go from the old content straight to
        # "degraded" (no epoch), never to an empty registry they would take at its word.
        client.delete(*others)
    return True


def _restore_task(
    client: Any,
    keys: RedisKeys,
    task: str,
    record: TaskRecord,
    *,
    durable: DurableCopy,
    signatures: SignaturePolicy,
    summary: RestoreSummary,
    progress: Callable[[str], None],
) -> None:
    pipe = client.pipeline(transaction=True)
    restored: list[int] = []
    size = 0
    for version in record.versions:
        fields = durable.version(task, version)
        try:
            sha256 = _checked(task, version, fields, signatures)
        except (CorruptArtifact, UntrustedExpert) as err:
            summary.skipped.append(f"{task} v{version}: {err}")
            continue
        pipe.hset(keys.version(task, version), mapping=fields)
        pipe.sadd(keys.versions(task), version)
        pipe.hset(keys.sha(task), sha256, version)
        restored.append(version)
        size += sum(len(v) for v in fields.values())
    mapping: dict[str, str | int] = {"next_version": record.next_version, "owner": record.owner}
    for alias, version in record.aliases.items():
        if version in restored:
            mapping[f"alias:{alias}"] = version
        else:
            summary.skipped.append(f"{task} {alias} alias (pointed at v{version}, not restored)")
    pipe.hset(keys.task(task), mapping=mapping)
    for alias, history in record.history.items():
        kept = [v for v in history if v in restored]
        if kept:
            pipe.rpush(keys.history(task, alias), *kept)
    if restored:
        pipe.sadd(keys.tasks, task)
    pipe.execute()
    summary.tasks += 1 if restored else 0
    summary.versions += len(restored)
    summary.bytes += size
    aliases = ", ".join(f"{a}=v{v}" for a, v in sorted(record.aliases.items()) if v in restored)
    progress(f"  {task}: {len(restored)} version(s), {size} bytes; {aliases or 'no alias'}")


def _checked(task: str, version: int, fields: dict[str, bytes], signatures: SignaturePolicy) -> str:
    """The model's sha256, once the record is whole, signed as the policy wants and intact."""
    if "card" not in fields or "model" not in fields:
        raise CorruptArtifact("card or model missing from the durable copy")
    signatures.check(task, version, fields["card"], fields.get("signature"))
    card = common.parse_card(task, version, fields["card"])
    common.verify(card, fields["model"])
    return hashlib.sha256(fields["model"]).hexdigest()


def sign_unsigned(
    client: Any,
    keys: RedisKeys,
    durable: DurableCopy | None,
    signatures: SignaturePolicy,
    *,
    progress: Callable[[str], None] = print,
) -> int:
    """Sign every stored version that has no signature (a registry filled before signing was
    on), in Redis and in ``durable``; returns how many. Signing vouches for the content as it
    is now: run it only on a registry whose content is trusted. A version with a signature,
    good or bad, is left as it is.

    Raises:
        FailedPrecondition: ``signatures`` has no key to sign with.
    """
    if signatures.signer is None:
        raise FailedPrecondition("no signing key: pass --signing-key-file")
    signed = 0
    with client.lock(keys.write_lock, timeout=RESTORE_LOCK_S, blocking_timeout=30.0):
        for task in sorted(name.decode() for name in client.smembers(keys.tasks)):
            for version in read_record(client, keys, task).versions:
                key = keys.version(task, version)
                card, signature = client.hmget(key, ["card", "signature"])
                if card is None or signature:
                    continue
                made = signatures.signer.sign(task, version, card)
                if durable is not None and durable.has_version(task, version):
                    durable.write_version(task, version, {"signature": made})
                client.hset(key, "signature", made)
                progress(f"  signed {task} v{version}")
                signed += 1
    return signed
