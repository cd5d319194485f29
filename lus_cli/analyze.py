"""``lus analyze``: send a video to the biomarker tier, then ask every expert for its answer."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import grpc

from lus.biomarker.v1 import biomarker_service_pb2 as bpb
from lus.biomarker.v1 import biomarker_service_pb2_grpc as bpb_grpc
from lus.expert.v1 import expert_service_pb2 as epb
from lus.expert.v1 import expert_service_pb2_grpc as epb_grpc
from lus.rpc.client import balanced_channel_options
from lus.rpc.server import MiB
from lus.schema import BiomarkerSchema
from lus_cli.report import biomarker_lines

STREAM_THRESHOLD = 3 * MiB
"""Videos above this go through ExtractStream, below gRPC's 4 MiB default message limit."""
CHUNK_BYTES = 1 * MiB
BIOMARKER_SERVICE = bpb.DESCRIPTOR.services_by_name["BiomarkerService"].full_name
EXPERT_SERVICE = epb.DESCRIPTOR.services_by_name["ExpertService"].full_name


@dataclass
class Analysis:
    extraction: bpb.ExtractResponse
    info: bpb.ModelInfo
    answers: list[epb.PredictResponse]
    failures: list[str]


def _chunks(data: bytes, video_format: bpb.VideoFormat) -> Iterator[bpb.ExtractChunk]:
    yield bpb.ExtractChunk(header=bpb.ExtractHeader(format=video_format, total_bytes=len(data)))
    for start in range(0, len(data), CHUNK_BYTES):
        yield bpb.ExtractChunk(data=data[start : start + CHUNK_BYTES])


def extract(channel: grpc.Channel, video: Path, timeout_s: float) -> bpb.ExtractResponse:
    stub = bpb_grpc.BiomarkerServiceStub(channel)
    data = video.read_bytes()
    reply: bpb.ExtractResponse
    if len(data) > STREAM_THRESHOLD:
        reply = stub.ExtractStream(_chunks(data, bpb.VIDEO_FORMAT_UNSPECIFIED), timeout=timeout_s)
    else:
        reply = stub.Extract(bpb.ExtractRequest(video=data), timeout=timeout_s)
    return reply


def analyze(
    video: Path, biomarker_addr: str, expert_addr: str, timeout_s: float = 120.0
) -> Analysis:
    # Round robin over every address a target resolves to, retries on transient statuses.
    biomarker_options = balanced_channel_options([BIOMARKER_SERVICE])
    expert_options = balanced_channel_options([EXPERT_SERVICE])
    with grpc.insecure_channel(biomarker_addr, options=biomarker_options) as channel:
        info = bpb_grpc.BiomarkerServiceStub(channel).GetModelInfo(
            bpb.GetModelInfoRequest(), timeout=10
        )
        extraction = extract(channel, video, timeout_s)
    answers, failures = [], []
    with grpc.insecure_channel(expert_addr, options=expert_options) as channel:
        stub = epb_grpc.ExpertServiceStub(channel)
        for task in stub.ListTasks(epb.ListTasksRequest(), timeout=10).tasks:
            try:
                answers.append(
                    stub.Predict(
                        epb.PredictRequest(task=task.task, vector=extraction.vector), timeout=10
                    )
                )
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


def _explanation_lines(answer: epb.PredictResponse, labels: dict[str, str]) -> list[str]:
    """Which biomarkers pushed the answer, and whether the input looks like the training data."""
    lines = []
    if answer.contributions:
        lines.append("      driven by (vs the training mean):")
        lines += [  # a low value can push as hard as a high one, so show both
            f"        {labels.get(c.biomarker, c.biomarker)}: p={c.value:.2f} "
            f"(mean {c.baseline:.2f}) {c.contribution:+.2f}"
            for c in answer.contributions[:3]
        ]
    if answer.distribution == epb.DISTRIBUTION_OUT:
        lines.append(
            f"      CAUTION: input is far from this expert's training vectors "
            f"(score {answer.ood_score:.2f} > {answer.ood_threshold:.2f})"
        )
    return lines


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
        lines += _explanation_lines(answer, labels)
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
