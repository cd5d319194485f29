"""``lus analyze``: send a video to the biomarker tier, then ask every expert for its answer.

Both tiers are reached through the shipped clients (``lus.clients``): round robin over
replicas, retries of transient statuses, a lookup by SOP Instance UID before uploading DICOM,
and large files streamed in chunks.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import grpc

from lus.biomarker.v1 import biomarker_service_pb2 as bpb
from lus.clients.biomarker import BiomarkerClient
from lus.clients.expert import ExpertClient
from lus.expert.v1 import expert_service_pb2 as epb
from lus.rpc.client import ClientTls
from lus.schema import BiomarkerSchema
from lus_cli.report import biomarker_lines, explanation_lines


@dataclass
class Analysis:
    extraction: bpb.ExtractResponse
    info: bpb.ModelInfo
    answers: list[epb.PredictResponse]
    failures: list[str]


def analyze(
    video: Path,
    biomarker_addr: str,
    expert_addr: str,
    timeout_s: float = 120.0,
    *,
    biomarker_tls: ClientTls | None = None,
    expert_tls: ClientTls | None = None,
) -> Analysis:
    """The video's biomarkers and every registered expert's answer for them.

    Args:
        video: A DICOM, MP4, AVI, GIF, MOV or MPEG file.
        biomarker_addr: Target of the biomarker tier, e.g. "dns:///lus-biomarker:50051".
        expert_addr: Target of the expert tier's public port.
        timeout_s: Deadline of each biomarker call, retries included (expert calls get 10 s:
            an answer takes milliseconds once the expert is loaded).
        biomarker_tls: CA (and client certificate) of a TLS biomarker port; None = plaintext.
        expert_tls: The same for the expert port.

    Raises:
        grpc.RpcError: The biomarker tier, or the expert tier's task list, failed; a failing
            expert is only reported in ``Analysis.failures``.
    """
    with BiomarkerClient(biomarker_addr, timeout_s=timeout_s, tls=biomarker_tls) as biomarkers:
        info = biomarkers.model_info()
        extraction = biomarkers.extract_path(video)
    answers, failures = [], []
    with ExpertClient(expert_addr, tls=expert_tls) as experts:  # 10 s a call
        for task in experts.list_tasks():
            try:
                answers.append(experts.predict(task.task, extraction.vector))
            except grpc.RpcError as err:  # e.g. an expert of another schema: report, keep going
                failures.append(f"{task.task}: {err.code().name}: {err.details()}")
    return Analysis(extraction, info, answers, failures)


def schema_from_proto(message: bpb.ModelInfo) -> BiomarkerSchema:
    groups: dict[str, list[list[str]]] = {g.key: [] for g in message.schema.groups}
    for b in message.schema.biomarkers:
        groups[b.group].append([b.key.split(".", 1)[1], b.label])
    return BiomarkerSchema.from_dict(
        {
            "name": message.schema.name,
            "version": message.schema.version,
            "groups": [
                {"key": g.key, "display_name": g.display_name, "levels": groups[g.key]}
                for g in message.schema.groups
            ],
        }
    )


def format_analysis(video: Path, analysis: Analysis) -> str:
    model = analysis.extraction.model
    summary = analysis.extraction.video
    schema = schema_from_proto(analysis.info)
    lines = [
        f"Video: {video.name} ({summary.frames} frames, "
        f"{summary.width}x{summary.height}, {summary.fps:.1f} fps)",
        "",
        f"Biomarkers ({schema.schema_id}, mean of {len(analysis.extraction.clip_vectors)} clips):",
        *(f"  {line}" for line in biomarker_lines(schema, list(analysis.extraction.vector.values))),
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
