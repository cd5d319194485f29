"""What each ``lus`` subcommand does; argument parsing lives in ``lus_cli.cli``."""

from __future__ import annotations

import argparse
import sys
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # typing only: each command imports what it uses when it runs
    from pathlib import Path

    from expert_service.card import ExpertCard
    from expert_service.registry import TaskState
    from lus.rpc.client import ClientTls


def run(args: argparse.Namespace) -> int:
    handler = {
        "synth": _synth,
        "train": _train,
        "promote": _promote,
        "experts": _experts,
        "audit": _audit,
        "extract": _extract,
        "export-onnx": _export_onnx,
        "serve": _serve,
        "analyze": _analyze,
        "demo": _demo,
        "eval": _eval,
        "domain-gap": _domain_gap,
    }[args.command]
    return handler(args)


def _synth(args: argparse.Namespace) -> int:
    from lus.synthetic import generate_dataset
    from lus.synthetic.style import DEFAULT_STYLE_VERSION

    manifest = generate_dataset(
        args.out,
        n_videos=args.videos,
        seed=args.seed,
        frames=args.frames,
        height=args.size,
        width=args.size,
        formats=tuple(args.formats.split(",")),
        style_version=args.style or DEFAULT_STYLE_VERSION,
    )
    print(f"wrote {manifest} (synthetic data: NOT FOR CLINICAL USE)")
    return 0


def _train(args: argparse.Namespace) -> int:
    if args.what == "biomarker":
        from trainer.augment import ClipAugment
        from trainer.biomarker_training import BiomarkerTrainingConfig, train_biomarker_model

        config = BiomarkerTrainingConfig(
            manifest=args.manifest,
            out=args.out,
            schema=args.schema,
            frames=args.frames,
            size=args.size,
            clips=args.clips,
            width=args.width,
            epochs=args.epochs,
            batch_size=args.batch_size,
            lr=args.lr,
            val_fraction=args.val_fraction,
            seed=args.seed,
            weights=args.weights,
            device=args.device,
            augment=ClipAugment.none() if args.no_augment else ClipAugment(),
            oversample=not args.no_oversample,
            checkpoint=args.checkpoint,
            crop=args.crop,
        )
        result = train_biomarker_model(config)
        print(
            f"wrote {result.artifact}: version {result.info.version}, "
            f"metrics {result.info.provenance.metrics}"
        )
        print(f"notice: {result.info.provenance.notice}")
        return 0
    if args.server:
        return _train_expert_on_server(args)
    from expert_service.registry import LocalRegistry
    from lus.schema import load_schema
    from trainer.experts import train_expert_from_csv

    registry = LocalRegistry(args.registry)
    card = train_expert_from_csv(
        args.vectors,
        task=args.task,
        registry=registry,
        schema=load_schema(args.schema),
        label_column=args.label_column or args.task,
        family=args.family,
        owner=args.owner,
        description=args.description,
        patient_column=args.patient_column,
        seed=args.seed,
        notice=args.notice,
        label_definition=args.label_definition,
        biomarker_model=args.biomarker_model,
        allow_class_change=args.allow_class_change,
    )
    if args.promote_to:
        registry.promote(card.task, card.version, args.promote_to)
    models = ", ".join(card.lineage.biomarker_models) if card.lineage is not None else "none"
    print(
        f"registered {card.task} v{card.version} ({card.model_family}) in {args.registry}: "
        f"{card.metrics}; fit on biomarker model {models}"
    )
    print(live_line(card, registry.task_state(card.task), args.registry))
    return 0


def live_line(card: ExpertCard, state: TaskState, registry: Path) -> str:
    """Whether ``card``'s version answers now in the local registry, and why (not)."""
    live = state.live_version()
    if live == card.version:
        if "production" in state.aliases:
            return f"{card.task} v{card.version} answers now (production -> v{card.version})"
        return (
            f"{card.task} v{card.version} answers now: this local registry serves a task's newest "
            "version while no production alias is set (a shared Redis registry serves a version "
            "only once promoted)"
        )
    return (
        f"{card.task} v{card.version} does not answer yet: production stays v{live}. Promote it "
        f"when reviewed: lus promote --task {card.task} --version {card.version} "
        f"--registry {registry}"
    )


def _promote(args: argparse.Namespace) -> int:
    from expert_service.registry import LocalRegistry

    registry = LocalRegistry(args.registry)
    version, previous = registry.promote(args.task, args.version, args.alias)
    before = f"v{previous}" if previous else "unset"
    print(f"{args.task}: {args.alias} -> v{version} (was {before})")
    return 0


def _experts(args: argparse.Namespace) -> int:
    from lus_cli.refit import run_experts

    return run_experts(args)


def _client_tls(args: argparse.Namespace) -> ClientTls | None:
    from lus.rpc.client import client_tls

    return client_tls(args.ca_file, args.cert_file, args.key_file, args.server_name)


def _train_expert_on_server(args: argparse.Namespace) -> int:
    import os

    import grpc
    from tqdm import tqdm

    from lus.clients.expert import ExpertAdminClient
    from lus.errors import InvalidInput
    from lus.expert.v1 import expert_service_pb2 as epb
    from lus.schema import load_schema
    from lus_cli.train_remote import TOKEN_VARIABLE, describe_job, training_request
    from trainer.vectors_csv import describe_training_data, read_vectors_csv

    token = args.token or os.environ.get(TOKEN_VARIABLE, "")
    if not token:
        raise InvalidInput(f"--server needs the team's token: --token or ${TOKEN_VARIABLE}")
    if not args.patient_column:
        raise InvalidInput("--server fits with patient-level validation; give --patient-column")
    schema = load_schema(args.schema)
    label_column = args.label_column or args.task
    data = read_vectors_csv(
        args.vectors,
        schema,
        label_column,
        args.patient_column,
        biomarker_model=args.biomarker_model,
    )
    request = training_request(
        data.vectors,
        data.labels,
        data.patients or [],
        data.models,
        task=args.task,
        schema_id=schema.schema_id,
        family=args.family,
        seed=args.seed,
        description=args.description,
        training_data=describe_training_data(args.vectors, data),
        notice=args.notice or " | ".join(data.notices),
        promote_to=args.promote_to,
        label_column=label_column,
        label_definition=args.label_definition,
        allow_class_change=args.allow_class_change,
    )
    with tqdm(total=100, desc=args.task, unit="%", bar_format="{l_bar}{bar}| {postfix}") as bar:

        def show(job: epb.TrainingJob) -> None:
            bar.update(round(100 * job.progress) - bar.n)
            bar.set_postfix_str(job.stage)

        try:
            with ExpertAdminClient(args.server, token, tls=_client_tls(args)) as admin:
                job = admin.train_and_follow(request, on_update=show)
        except grpc.RpcError as err:
            bar.close()
            print(f"error: {err.code().name}: {err.details()}")
            return 1
    print(describe_job(job))
    return 0 if job.state == epb.TRAINING_JOB_STATE_SUCCEEDED else 1


def _extract(args: argparse.Namespace) -> int:
    from trainer.vectors import extract_vectors

    print(f"wrote {extract_vectors(args.artifact, args.manifest, args.out, device=args.device)}")
    return 0


def _export_onnx(args: argparse.Namespace) -> int:
    if args.quantize == "none":
        from biomarker_service.onnx_export import export_onnx

        print(f"wrote {export_onnx(args.artifact, args.out)}")
        return 0
    if args.parity_manifest is None:
        # An int8 file without its parity record is refused by the server: do not write one.
        print(
            "lus export-onnx: --quantize needs --parity-manifest HELDOUT.csv (held-out videos on"
            " which int8 is compared with fp32; the server refuses int8 without that check)",
            file=sys.stderr,
        )
        return 2
    from trainer.int8_parity import quantize_with_parity

    record = quantize_with_parity(
        args.artifact,
        args.out,
        manifest=args.parity_manifest,
        mode=args.quantize,
        calibration_manifest=args.calibration_manifest,
    )
    verdict = "passed" if record["passed"] else "FAILED (the server will refuse this file)"
    print(f"wrote {args.out}; int8 parity check {verdict}")
    return 0 if record["passed"] else 1


def _serve(args: argparse.Namespace) -> int:
    from lus_cli.serve_local import LocalStack, serve_forever

    serve_forever(
        LocalStack(
            args.artifact,
            args.registry,
            args.host,
            args.biomarker_port,
            args.expert_port,
            args.expert_admin_port,
        )
    )
    return 0


def _analyze(args: argparse.Namespace) -> int:
    from lus_cli.analyze import run_analyze

    return run_analyze(args)


def _audit(args: argparse.Namespace) -> int:
    from lus_cli.audit import run_audit

    return run_audit(args)


def _eval(args: argparse.Namespace) -> int:
    from lus_cli.eval import run_eval

    return run_eval(args)


def _domain_gap(args: argparse.Namespace) -> int:
    from lus_cli.domain_gap import run_domain_gap

    return run_domain_gap(args)


def _demo(args: argparse.Namespace) -> int:
    from lus_cli.demo import run_demo

    run_demo(args.workdir, n_videos=args.videos, epochs=args.epochs)
    return 0
