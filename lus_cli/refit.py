"""``lus experts refit | release | rollback-release``: move a task's experts to the next
biomarker model (docs/operations.md, "Biomarker model upgrade").

    lus experts refit --task T --to-model B --biomarker HOST:PORT [--videos MANIFEST] ...
    lus experts release --to-model B --tasks T1,T2
    lus experts rollback-release --tasks T1,T2 [--from-model B]

Each works on the registry directly (``--registry DIR`` or ``--redis URL``), as an operator
with access to it, not through the admin port: a refit reads the stored training sets, which
the admin API does not serve. Exit status: 0 done; 1 refused (missing examples, a worse refit,
a task without a staged version, a model the biomarker tier does not serve), with the reason;
2 bad arguments or an unusable registry.
"""

from __future__ import annotations

import argparse
import csv
import sys
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # typing only: each command imports what it uses when it runs
    from expert_service.registry import ExpertRegistry
    from trainer.refit import MissingExample


def _add_registry(p: argparse.ArgumentParser) -> None:
    where = p.add_mutually_exclusive_group()
    where.add_argument(
        "--registry", type=Path, default=Path("lus-registry"), help="local registry folder"
    )
    where.add_argument(
        "--redis", metavar="URL", help="shared Redis registry, e.g. redis://h:6379/0"
    )
    p.add_argument(
        "--redis-prefix", default="lus:expert:", help="key prefix (LUS_EXPERT_REGISTRY_PREFIX)"
    )


def add_experts_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """``lus experts ...`` (argparse only; nothing heavy is imported here)."""
    experts = sub.add_parser(
        "experts", help="refit experts on the next biomarker model, release, roll back"
    ).add_subparsers(dest="action", required=True)

    r = experts.add_parser(
        "refit",
        help="refit a task's production expert on another biomarker model's vectors of its "
        "stored examples, gate it against production, stage it",
    )
    r.add_argument("--task", required=True)
    r.add_argument(
        "--to-model", required=True, help="served version of the next biomarker model (ModelRef)"
    )
    r.add_argument(
        "--biomarker", required=True, metavar="HOST:PORT", help="biomarker tier serving the model"
    )
    r.add_argument(
        "--videos",
        type=Path,
        help="CSV with a 'video' column (paths relative to the CSV) of files to re-extract "
        "when the feature store has no vector of the model; matched by file sha256, by file "
        "name as written, or by pixel hash",
    )
    r.add_argument(
        "--tolerance",
        type=float,
        default=0.02,
        help="largest drop allowed in any held-out figure, absolute (default 0.02)",
    )
    r.add_argument(
        "--allow-missing",
        type=float,
        default=0.0,
        metavar="SHARE",
        help="share of examples (0-1) that may be left out when their vectors cannot be had "
        "(default 0: any missing example stops the refit)",
    )
    r.add_argument("--missing-csv", type=Path, help="write every missing example here")
    r.add_argument("--timeout", type=float, default=120.0, help="seconds per biomarker call")
    r.add_argument("--no-progress", action="store_true")
    _add_registry(r)
    _add_tls(r)

    rel = experts.add_parser(
        "release",
        help="move production of every listed task to its staged version fit on the model, "
        "in one step",
    )
    rel.add_argument("--to-model", required=True)
    rel.add_argument("--tasks", required=True, help="comma-separated task names")
    _add_registry(rel)

    back = experts.add_parser(
        "rollback-release", help="move production of every listed task back, in one step"
    )
    back.add_argument("--tasks", required=True, help="comma-separated task names")
    back.add_argument(
        "--from-model", default="", help="refuse unless production of each is fit on this model"
    )
    _add_registry(back)


def _add_tls(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("TLS", "for the biomarker tier; none of these set means plaintext")
    g.add_argument("--ca-file", type=Path)
    g.add_argument("--cert-file", type=Path)
    g.add_argument("--key-file", type=Path)
    g.add_argument("--server-name")


def open_registry(args: argparse.Namespace) -> ExpertRegistry:
    """The registry the arguments name: Redis with ``--redis``, else the local folder."""
    if args.redis:  # signed and copied durably as the replicas' own writes are
        from lus_cli.registry import open_shared_registry

        return open_shared_registry(args.redis, prefix=args.redis_prefix)
    from expert_service.registry import LocalRegistry

    if not Path(args.registry).is_dir():
        from lus.errors import NotFound

        raise NotFound(f"no registry folder {args.registry}")
    return LocalRegistry(args.registry)


def run_experts(args: argparse.Namespace) -> int:
    registry = open_registry(args)
    try:
        action = {"refit": _refit, "release": _release, "rollback-release": _rollback}
        return action[args.action](args, registry)
    finally:
        close = getattr(registry, "close", None)
        if callable(close):
            close()


def _refit(args: argparse.Namespace, registry: ExpertRegistry) -> int:
    import grpc

    from lus.clients.biomarker import BiomarkerClient
    from lus.errors import FailedPrecondition, LusError
    from lus.rpc.client import client_tls
    from trainer.refit import RefitRefused, example_refs, refit_task
    from trainer.refit_sources import BiomarkerVectorSource, VideoIndex, served_specs

    progress = not args.no_progress
    tls = client_tls(args.ca_file, args.cert_file, args.key_file, args.server_name)
    with BiomarkerClient(args.biomarker, timeout_s=args.timeout, tls=tls) as client:
        try:
            client.model_info(args.to_model)  # is the model served at all? (stage it first)
        except (grpc.RpcError, LusError) as err:
            details = err.details() if isinstance(err, grpc.Call) else str(err)
            print(
                f"refused: the biomarker tier at {args.biomarker} does not serve {args.to_model} "
                f"({details}); stage it first (LUS_BIOMARKER_NEXT_ARTIFACT)",
                file=sys.stderr,
            )
            return 1
        videos = None
        if args.videos is not None:
            refs = example_refs(registry.training_set(args.task))
            specs = served_specs(client)  # the pixel hashes of its answers depend on them
            videos = VideoIndex.from_manifest(args.videos, refs, progress=progress, specs=specs)
            if videos.absent:
                print(f"note: {len(videos.absent)} files of {args.videos} do not exist")
        source = BiomarkerVectorSource(client, videos)
        try:
            result = refit_task(
                registry,
                args.task,
                args.to_model,
                source,
                tolerance=args.tolerance,
                allow_missing=args.allow_missing,
                progress=progress,
            )
        except RefitRefused as err:
            _write_missing(args.missing_csv, err.missing)
            if err.gate is not None:
                print("\n".join(err.gate.describe()))
            print(f"refused: {err}", file=sys.stderr)
            return 1
        except FailedPrecondition as err:  # nothing to refit (already on the model, ...)
            print(f"refused: {err}", file=sys.stderr)
            return 1
    _write_missing(args.missing_csv, result.missing)
    card = result.card
    if result.pinned:
        print(f"pinned production of {card.task} to v{result.from_version} (it was unset)")
    print("\n".join(result.gate.describe()))
    counts = ", ".join(f"{n} {how}" for how, n in sorted(result.via.items()))
    left_out = f"; {len(result.missing)} left out" if result.missing else ""
    print(
        f"registered {card.task} v{card.version} ({card.model_family}) fit on {args.to_model} "
        f"from v{result.from_version}'s examples ({counts}{left_out}); staging -> "
        f"v{card.version}. It answers nothing until released: lus experts release "
        f"--to-model {args.to_model} --tasks {card.task}"
    )
    return 0


def _write_missing(path: Path | None, missing: tuple[MissingExample, ...]) -> None:
    if path is None:
        return
    with path.open("w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(["row", "pixel_hash", "content_sha256", "name_sha256", "reason"])
        for item in missing:
            ref = item.ref
            writer.writerow(
                [ref.row, ref.pixel_hash, ref.content_sha256, ref.name_sha256, item.reason]
            )
    print(f"wrote {len(missing)} missing examples to {path}")


def _release(args: argparse.Namespace, registry: ExpertRegistry) -> int:
    from expert_service.release import biomarker_switch, parse_tasks, release
    from lus.errors import FailedPrecondition

    try:
        steps = release(registry, parse_tasks(args.tasks), args.to_model)
    except FailedPrecondition as err:
        print(f"refused: {err}", file=sys.stderr)
        return 1
    for step in steps:
        before = f"v{step.previous}" if step.previous else "unset"
        print(f"{step.task}: production -> v{step.version} (was {before})")
    print(biomarker_switch(args.to_model))
    return 0


def _rollback(args: argparse.Namespace, registry: ExpertRegistry) -> int:
    from expert_service.release import parse_tasks, rollback_release
    from lus.errors import FailedPrecondition

    try:
        moved = rollback_release(registry, parse_tasks(args.tasks), args.from_model)
    except FailedPrecondition as err:
        print(f"refused: {err}", file=sys.stderr)
        return 1
    for task, (now, before) in moved.items():
        print(f"{task}: production -> v{now} (was v{before})")
    print(
        "Point the biomarker tier's LUS_BIOMARKER_ARTIFACT back at the model these versions "
        "were fit on, if it was switched, and roll the Deployment."
    )
    return 0
