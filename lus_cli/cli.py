"""The ``lus`` command: generate data, train, serve, analyze, and the end-to-end demo.

Imports are local to each command so the expert tier never loads torch or video decoders.
"""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path


def _add_client_tls(p: argparse.ArgumentParser, what: str) -> None:
    """Flags for calling TLS ports; none set means plaintext (``lus.rpc.client.client_tls``)."""
    g = p.add_argument_group("TLS", f"for {what}; none of these set means plaintext")
    g.add_argument("--ca-file", type=Path, help="CA bundle that signed the server's certificate")
    g.add_argument("--cert-file", type=Path, help="client certificate, for mutual TLS")
    g.add_argument("--key-file", type=Path, help="client certificate's private key")
    g.add_argument(
        "--server-name", help="name the server's certificate must carry, if not the host"
    )


def _add_synth(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser("synth", help="write synthetic cine loops + labels (NOT for clinical use)")
    p.add_argument("out", type=Path, help="output folder (videos/, manifest.csv, NOTICE.txt)")
    p.add_argument("--videos", type=int, default=200)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--frames", type=int, default=24, help="frames per video")
    p.add_argument("--size", type=int, default=128, help="frame height and width in pixels")
    p.add_argument(
        "--formats",
        default="mp4",
        help="comma-separated: mp4,avi,gif,mov,mpeg,dcm (DICOM ultrasound multi-frame)",
    )
    p.add_argument(
        "--style", choices=("v1", "v2"), help="look of the loops (default: the generator's)"
    )


def _add_train(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    train = sub.add_parser("train", help="train the biomarker model or an expert").add_subparsers(
        dest="what", required=True
    )
    b = train.add_parser("biomarker", help="train TSM ResNet-18 on a manifest CSV")
    b.add_argument("--manifest", type=Path, required=True)
    b.add_argument("--out", type=Path, required=True, help="artifact file (.safetensors)")
    b.add_argument("--schema", default="gare2022-lus38", help="schema name or JSON path")
    b.add_argument("--frames", type=int, default=15, help="frames per clip (paper: 15)")
    b.add_argument("--size", type=int, default=224, help="frame size (paper: 224)")
    b.add_argument("--clips", type=int, default=4, help="clips averaged at inference (paper: 4)")
    b.add_argument("--width", type=int, default=64, help="first-stage channels (64 = ResNet-18)")
    b.add_argument("--epochs", type=int, default=30)
    b.add_argument("--batch-size", type=int, default=8)
    b.add_argument("--lr", type=float, default=1e-4, help="Adam learning rate (paper: 1e-4)")
    b.add_argument(
        "--val-fraction", type=float, default=0.2, help="share of patients for validation"
    )
    b.add_argument("--seed", type=int, default=0)
    b.add_argument("--weights", type=Path, help="local torchvision resnet18 weights (ImageNet)")
    b.add_argument("--device", default="auto")
    b.add_argument("--no-augment", action="store_true", help="switch off the paper's augmentations")
    b.add_argument("--no-oversample", action="store_true", help="no oversampling of rare labels")
    b.add_argument("--checkpoint", type=Path, help="per-epoch checkpoint; resumed if it exists")
    b.add_argument(
        "--crop",
        choices=["none", "auto"],
        default="none",
        help="auto: cut frames to the imaging region (DICOM regions, else a heuristic)",
    )

    e = train.add_parser("expert", help="fit an expert on biomarker vectors and register it")
    e.add_argument("--task", required=True, help="task name, e.g. lung_severity")
    e.add_argument("--vectors", type=Path, required=True, help="CSV from `lus extract`")
    e.add_argument("--label-column", help="label column in the CSV (default: the task name)")
    e.add_argument("--registry", type=Path, default=Path("lus-registry"))
    e.add_argument("--schema", default="gare2022-lus38")
    e.add_argument(
        "--family", default="zoo", help="zoo (7 families x 3 seeds, best kept) or one family"
    )
    e.add_argument("--owner", default="local")
    e.add_argument("--description", default="")
    e.add_argument("--patient-column", default="patient_id", help="for held-out metrics")
    e.add_argument("--seed", type=int, default=0)
    e.add_argument("--notice", help="use restriction (default: the CSV's)")
    e.add_argument(
        "--label-definition",
        default="",
        help="what the label values mean, e.g. '0-3: lung ultrasound score, worst zone' (card)",
    )
    e.add_argument(
        "--biomarker-model",
        help="version of the biomarker model that made the vectors, for a CSV without a "
        "biomarker_model column (`lus extract` writes one); ground-truth for annotated findings",
    )
    e.add_argument(
        "--allow-class-change",
        action="store_true",
        help="register a version whose classes differ from the live version's; it then "
        "answers only once promoted (--promote-to, or lus promote)",
    )
    e.add_argument(
        "--server",
        metavar="HOST:PORT",
        help="fit on the expert tier's admin port (TrainExpert) instead of locally, and follow "
        "the job; --registry and --owner are then unused (the token names the team)",
    )
    e.add_argument("--token", help="team bearer token for --server (default: $LUS_ADMIN_TOKEN)")
    e.add_argument("--token-file", type=Path, help="file holding the team token (for --server)")
    e.add_argument(
        "--insecure",
        action="store_true",
        help="allow --server without TLS: the token then travels in plaintext",
    )
    _add_client_tls(e, "the admin port (--server)")
    e.add_argument(
        "--promote-to",
        default="",
        help="point this alias (production, staging) at the new version",
    )


def _add_promote(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser("promote", help="point an alias of a task in a local registry at a version")
    p.add_argument("--task", required=True)
    p.add_argument("--version", type=int, required=True)
    p.add_argument("--alias", default="production", help="production (default) or staging")
    p.add_argument("--registry", type=Path, default=Path("lus-registry"))


def _add_extract(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser("extract", help="biomarker vectors for every video of a manifest (CSV)")
    p.add_argument("--artifact", type=Path, required=True)
    p.add_argument("--manifest", type=Path, required=True)
    p.add_argument("--out", type=Path, required=True)
    p.add_argument("--device", default="auto")


def _add_export(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser("export-onnx", help="export a biomarker artifact to ONNX (optionally int8)")
    p.add_argument("--artifact", type=Path, required=True)
    p.add_argument("--out", type=Path, required=True, help="the .onnx file to write")
    p.add_argument(
        "--quantize",
        choices=["none", "dynamic", "static"],
        default="none",
        help="int8 quantisation (needs --parity-manifest: the server refuses unchecked int8)",
    )
    p.add_argument(
        "--parity-manifest",
        type=Path,
        help="held-out videos (manifest CSV) on which int8 is checked against fp32",
    )
    p.add_argument(
        "--calibration-manifest",
        type=Path,
        help="videos static int8 calibrates on (default: the parity videos)",
    )


def _add_serve(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser("serve", help="start both tiers on localhost (embedded registry, CPU)")
    p.add_argument("--artifact", type=Path, required=True)
    p.add_argument("--registry", type=Path, default=Path("lus-registry"))
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--biomarker-port", type=int, default=50051)
    p.add_argument("--expert-port", type=int, default=50052)
    p.add_argument("--expert-admin-port", type=int, default=50053)


def _add_analyze(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser("analyze", help="biomarker report and every expert's answer for a video")
    p.add_argument("video", type=Path)
    p.add_argument("--biomarker", default="127.0.0.1:50051", help="biomarker service address")
    p.add_argument("--expert", default="127.0.0.1:50052", help="expert service address")
    p.add_argument("--timeout", type=float, default=120.0, help="seconds")
    p.add_argument(
        "--sr",
        type=Path,
        metavar="OUT",
        help="also write a DICOM SR (TID 1500) of the results to OUT; DICOM input only",
    )
    _add_client_tls(p, "both services")


def _add_audit(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    from lus_cli.audit import add_audit_parser  # argparse only; no server code

    add_audit_parser(sub)


def _add_registry(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    from lus_cli.registry import add_registry_parser  # argparse only; no server code

    add_registry_parser(sub)


def _add_experts(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    from lus_cli.refit import add_experts_parser  # argparse only; no trainer or server code

    add_experts_parser(sub)


def _add_demo(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser("demo", help="synthetic data -> train -> serve -> analyze, end to end")
    p.add_argument("--workdir", type=Path, default=Path("demo-output"))
    p.add_argument("--videos", type=int, default=500)
    p.add_argument("--epochs", type=int, default=20)


def _add_domain_gap(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    from lus_cli.domain_gap import add_domain_gap_parser  # argparse only; no numpy work

    add_domain_gap_parser(sub)


def _add_eval(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    from lus_cli.eval import add_eval_parser  # imports neither torch nor scikit-learn

    add_eval_parser(sub)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="lus", description=__doc__)
    parser.add_argument("-v", "--verbose", action="store_true")
    sub = parser.add_subparsers(dest="command", required=True)
    for add in (
        _add_synth,
        _add_train,
        _add_promote,
        _add_experts,
        _add_extract,
        _add_export,
        _add_serve,
        _add_analyze,
        _add_eval,
        _add_domain_gap,
        _add_audit,
        _add_registry,
        _add_demo,
    ):
        add(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    from lus.errors import LusError
    from lus_cli import commands

    try:
        if getattr(args, "server", None) and args.command == "train":
            from lus_cli.train_remote import check_token_transport

            check_token_transport(args)  # no token in plaintext without --insecure
        if args.command == "registry":
            from lus_cli.registry import run_registry

            return run_registry(args)
        return commands.run(args)
    except LusError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:  # e.g. `lus analyze ... | head`
        sys.stderr.close()
        return 0


if __name__ == "__main__":
    sys.exit(main())
