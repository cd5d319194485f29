"""``lus analyze``: send a video to the biomarker tier, then ask every expert for its answer,
and on request write a DICOM Structured Report of it all (``--sr out.dcm``).

Both tiers are reached through the shipped clients and the one analysis path that the DICOM
gateway uses too (``lus.clients.analysis.analyze``): round robin over replicas, retries of
transient statuses, a lookup by content before uploading, and large files streamed in chunks.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from lus.clients.analysis import Analysis, schema_from_info
from lus.clients.analysis import analyze as analyze_video
from lus.clients.biomarker import BiomarkerClient
from lus.clients.expert import ExpertClient
from lus.rpc.client import ClientTls, client_tls
from lus_cli.report import biomarker_lines, explanation_lines

__all__ = ["Analysis", "analyze", "format_analysis", "run_analyze"]


def analyze(
    video: Path,
    biomarker_addr: str,
    expert_addr: str,
    timeout_s: float = 120.0,
    *,
    biomarker_tls: ClientTls | None = None,
    expert_tls: ClientTls | None = None,
    structured_report: bool = False,
) -> Analysis:
    """The video's biomarkers, every registered expert's answer and, on request, a DICOM SR.

    Args:
        video: A DICOM, MP4, AVI, GIF, MOV or MPEG file.
        biomarker_addr: Target of the biomarker tier, e.g. "dns:///lus-biomarker:50051".
        expert_addr: Target of the expert tier's public port.
        timeout_s: Budget of the whole analysis, and the deadline of each biomarker call
            (expert calls get 10 s: an answer takes milliseconds once the expert is loaded).
        biomarker_tls: CA (and client certificate) of a TLS biomarker port; None = plaintext.
        expert_tls: The same for the expert port.
        structured_report: Also build a DICOM Comprehensive SR (``Analysis.sr``); needs a
            DICOM input.

    Raises:
        grpc.RpcError: The biomarker tier, or the expert tier's task list, failed; a failing
            expert is only reported in ``Analysis.failures``.
        InvalidInput: A report was asked for a non-DICOM input (before any call).
    """
    data = video.read_bytes()
    with (
        BiomarkerClient(biomarker_addr, timeout_s=timeout_s, tls=biomarker_tls) as biomarkers,
        ExpertClient(expert_addr, tls=expert_tls) as experts,
    ):
        return analyze_video(
            biomarkers, experts, data, structured_report=structured_report, timeout_s=timeout_s
        )


def run_analyze(args: argparse.Namespace) -> int:
    """``lus analyze VIDEO [--sr OUT]``: print the report; write the SR when asked."""
    import grpc

    sr_path: Path | None = getattr(args, "sr", None)
    tls = client_tls(args.ca_file, args.cert_file, args.key_file, args.server_name)
    try:
        result = analyze(
            args.video,
            args.biomarker,
            args.expert,
            timeout_s=args.timeout,
            biomarker_tls=tls,
            expert_tls=tls,
            structured_report=sr_path is not None,
        )
    except grpc.RpcError as err:
        code = err.code().name if isinstance(err, grpc.Call) else "UNKNOWN"
        details = err.details() if isinstance(err, grpc.Call) else ""
        print(f"error: {code}: {details}")
        return 1
    print(format_analysis(args.video, result))
    if sr_path is not None and result.sr is not None:
        sr_path.write_bytes(result.sr)
        print(f"Structured report (DICOM SR, TID 1500): {sr_path}")
    return 0


def format_analysis(video: Path, analysis: Analysis) -> str:
    model = analysis.extract.model
    summary = analysis.extract.video
    schema = schema_from_info(analysis.info)
    lines = [
        f"Video: {video.name} ({summary.frames} frames, "
        f"{summary.width}x{summary.height}, {summary.fps:.1f} fps)",
        "",
        f"Biomarkers ({schema.schema_id}, mean of {len(analysis.extract.clip_vectors)} clips):",
        *(f"  {line}" for line in biomarker_lines(schema, list(analysis.extract.vector.values))),
        "",
        "Experts:",
    ]
    labels = {b.key: f"{schema.group(b.group).display_name}: {b.label}" for b in schema.biomarkers}
    for answer in analysis.answers:
        probs = ", ".join(f"{p.label}={p.probability:.2f}" for p in answer.probabilities)
        lines.append(f"  {answer.task} v{answer.version}: {answer.label}   ({probs})")
        lines += explanation_lines(answer, labels)
    lines += [f"  {failure}" for failure in analysis.failures]
    if not analysis.answers and not analysis.failures:
        lines.append("  (no expert registered)")
    lines += [
        "",
        f"Model: {model.model_version} - {model.architecture}; trained on {model.training_data}; "
        f"created {model.created_at}",
        f"Notice: {model.notice}",
    ]
    return "\n".join(lines)
