"""``lus registry``: operate the shared (Redis) expert registry.

    lus registry restore --redis-url redis://redis:6379/0 --durable-dir /var/lib/lus/registry
    lus registry status  --redis-url redis://redis:6379/0 --durable-dir /var/lib/lus/registry
    lus registry sign    --redis-url ... --durable-dir ... --signing-key-file /registry-signing/key

``restore`` rebuilds a Redis that lost the registry (restarted without persistence, replaced)
from the durable copy the replicas write through to (``LUS_EXPERT_REGISTRY_DURABLE_DIR``),
under the same epoch: the replicas, which kept serving their loaded experts and refused writes
meanwhile, re-sync and take writes again. Exit status: 0 restored (or nothing to do), 2 refused
or failed (the message says why).
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import redis

    from expert_service.registry.durable import DurableCopy
    from expert_service.registry.redis_keys import RedisKeys
    from expert_service.registry.redis_store import RedisRegistry
    from expert_service.registry.signing import SignatureMode

DEFAULT_PREFIX = "lus:expert:"


def add_registry_parser(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add the ``registry`` subcommand; ``run_registry`` runs it."""
    p = subparsers.add_parser(
        "registry", help="operate the Redis expert registry (restore from its durable copy)"
    ).add_subparsers(dest="action", required=True)
    restore = p.add_parser(
        "restore",
        help="rebuild the registry in Redis from its durable copy, under the same epoch",
        description="Rebuild the expert registry in Redis from the durable copy "
        "(LUS_EXPERT_REGISTRY_DURABLE_DIR), restoring its epoch last so replicas re-sync. "
        "Versions whose signature or model hash fails are left out and listed.",
    )
    _common(restore)
    restore.add_argument(
        "--force",
        action="store_true",
        help="replace what Redis holds under the prefix even if it is another registry's",
    )
    status = p.add_parser("status", help="the epochs of Redis and the durable copy")
    _common(status)
    sign = p.add_parser(
        "sign",
        help="sign every version stored without a signature (vouches for it as it is now)",
        description="Sign every version that has no signature, in Redis and the durable copy: "
        "for a registry filled before LUS_EXPERT_REGISTRY_SIGNING_KEY_FILE was set. Run it "
        "only on content you trust; versions with a signature are left as they are.",
    )
    _common(sign)


def _common(p: argparse.ArgumentParser) -> None:
    p.add_argument("--redis-url", required=True, metavar="URL", help="the registry's Redis")
    p.add_argument(
        "--durable-dir", type=Path, required=True, metavar="DIR", help="the durable copy folder"
    )
    p.add_argument(
        "--prefix", default=DEFAULT_PREFIX, help=f"registry key prefix (default {DEFAULT_PREFIX})"
    )
    p.add_argument(
        "--signing-key-file",
        type=Path,
        default=_env_path("LUS_EXPERT_REGISTRY_SIGNING_KEY_FILE"),
        help="keys to check signatures with (default: $LUS_EXPERT_REGISTRY_SIGNING_KEY_FILE)",
    )
    p.add_argument(
        "--signatures",
        choices=["require", "warn"],
        default=os.environ.get("LUS_EXPERT_REGISTRY_SIGNATURES", "warn"),
        help="require: leave unsigned versions out (default: $LUS_EXPERT_REGISTRY_SIGNATURES "
        "or warn)",
    )


def _env_path(name: str) -> Path | None:
    value = os.environ.get(name)
    return Path(value) if value else None


def run_registry(args: argparse.Namespace) -> int:
    """Run ``lus registry <action>``; 0 done, 2 refused or failed."""
    import redis

    from expert_service.registry.durable import folder_copy
    from expert_service.registry.redis_keys import RedisKeys
    from expert_service.registry.redis_store import without_password
    from lus.errors import LusError

    if not args.durable_dir.is_dir():
        print(f"error: {args.durable_dir} is not a folder", file=sys.stderr)
        return 2
    client = redis.Redis.from_url(args.redis_url, socket_timeout=30.0)
    shown = without_password(args.redis_url)
    try:
        keys, durable = RedisKeys(args.prefix), folder_copy(args.durable_dir)
        if args.action == "status":
            return _status(client, keys, durable, shown)
        if args.action == "sign":
            return _sign(args, client, keys, durable)
        return _restore(args, client, shown)
    except (LusError, OSError, ValueError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    except redis.RedisError as err:
        print(f"error: Redis at {shown}: {type(err).__name__}: {err}", file=sys.stderr)
        return 2
    finally:
        client.close()


def _restore(args: argparse.Namespace, client: redis.Redis, shown: str) -> int:
    from expert_service.registry.durable import folder_copy
    from expert_service.registry.mirror import restore
    from expert_service.registry.redis_keys import RedisKeys
    from expert_service.registry.signing import SignaturePolicy

    signatures = SignaturePolicy.from_key_file(args.signatures, args.signing_key_file)
    durable = folder_copy(args.durable_dir)
    print(f"restoring the expert registry from {args.durable_dir} into {shown} ({args.prefix})")
    print(f"  {signatures.describe()}")
    summary = restore(client, RedisKeys(args.prefix), durable, signatures, force=args.force)
    if summary.already:
        print(
            f"nothing to do: Redis already holds this registry (epoch {summary.epoch[:12]}); "
            "--force rewrites it from the copy"
        )
        return 0
    for line in summary.skipped:
        print(f"  left out: {line}")
    print(
        f"restored {summary.tasks} task(s), {summary.versions} version(s), {summary.bytes} "
        f"bytes in {summary.seconds:.1f} s; epoch {summary.epoch[:12]}; "
        f"{len(summary.skipped)} left out. Replicas re-sync and accept writes again."
    )
    return 0


def _sign(
    args: argparse.Namespace, client: redis.Redis, keys: RedisKeys, durable: DurableCopy
) -> int:
    from expert_service.registry.mirror import sign_unsigned
    from expert_service.registry.signing import SignaturePolicy

    signatures = SignaturePolicy.from_key_file("require", args.signing_key_file)
    signed = sign_unsigned(client, keys, durable, signatures)
    print(f"signed {signed} version(s) with {signatures.describe()}")
    return 0


def _status(client: redis.Redis, keys: RedisKeys, durable: DurableCopy, shown: str) -> int:
    found = client.get(keys.epoch)
    kept = durable.epoch()
    redis_epoch = found.decode() if isinstance(found, bytes) else None
    tasks = client.scard(keys.tasks)
    print(f"Redis {shown} ({keys.prefix}): epoch {redis_epoch or 'none'}, {tasks} task(s)")
    print(f"durable copy: epoch {kept or 'none'}, {len(durable.tasks())} task(s)")
    if kept is not None and redis_epoch != kept:
        print("degraded: run `lus registry restore` with the same --redis-url and --durable-dir")
        return 1
    print("in step")
    return 0


def open_shared_registry(url: str, *, prefix: str, timeout_s: float = 10.0) -> RedisRegistry:
    """A Redis registry for operator commands that write (``lus experts refit``/``release``),
    with the durable copy and signing key the replicas use: ``LUS_EXPERT_REGISTRY_DURABLE_DIR``,
    ``LUS_EXPERT_REGISTRY_SIGNING_KEY_FILE`` and ``LUS_EXPERT_REGISTRY_SIGNATURES`` from the
    environment. Without them its versions are unsigned (refused where replicas require
    signatures) and reach the durable copy only at the writer's next write of the task.
    """
    from expert_service.registry.durable import folder_copy
    from expert_service.registry.redis_store import RedisRegistry
    from expert_service.registry.signing import SignaturePolicy

    durable = _env_path("LUS_EXPERT_REGISTRY_DURABLE_DIR")
    mode: SignatureMode = (
        "require" if os.environ.get("LUS_EXPERT_REGISTRY_SIGNATURES") == "require" else "warn"
    )
    return RedisRegistry(
        url,
        prefix=prefix,
        timeout_s=timeout_s,
        durable=folder_copy(durable) if durable is not None else None,
        signatures=SignaturePolicy.from_key_file(
            mode, _env_path("LUS_EXPERT_REGISTRY_SIGNING_KEY_FILE")
        ),
    )
