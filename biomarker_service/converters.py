"""The only module of the GPU tier that touches protobuf: requests in, responses out."""

from __future__ import annotations

from biomarker_service.artifact import ArtifactInfo
from biomarker_service.extractor import Extraction
from lus.biomarker.v1 import biomarker_service_pb2 as pb
from lus.biomarker.v1 import schema_pb2
from lus.errors import InvalidInput
from lus.schema import BiomarkerSchema
from lus.video import DecodedVideo, frames_from_raw


def schema_to_proto(schema: BiomarkerSchema) -> schema_pb2.BiomarkerSchema:
    return schema_pb2.BiomarkerSchema(
        schema_id=schema.schema_id,
        name=schema.name,
        version=schema.version,
        groups=[
            schema_pb2.BiomarkerGroup(key=g.key, display_name=g.display_name) for g in schema.groups
        ],
        biomarkers=[
            schema_pb2.Biomarker(key=b.key, group=b.group, label=b.label) for b in schema.biomarkers
        ],
    )


def provenance_to_proto(info: ArtifactInfo) -> pb.ModelProvenance:
    p = info.provenance
    return pb.ModelProvenance(
        model_version=info.version,
        architecture=f"TSM ResNet-18 (width {info.width})",
        training_data=p.training_data,
        created_at=p.created_at,
        clinical_use=p.clinical_use,
        notice=p.notice,
    )


def model_info_to_proto(info: ArtifactInfo) -> pb.ModelInfo:
    spec = info.spec
    return pb.ModelInfo(
        schema=schema_to_proto(info.schema),
        model=provenance_to_proto(info),
        input=pb.InputSpec(
            frames_per_clip=spec.frames_per_clip,
            height=spec.size,
            width=spec.size,
            clips=spec.clips,
            mean=list(spec.mean),
            std=list(spec.std),
            crop=spec.crop,
        ),
    )


def raw_frames_from_proto(frames: pb.RawFrames) -> DecodedVideo:
    return frames_from_raw(
        frames.pixels,
        count=frames.count,
        height=frames.height,
        width=frames.width,
        channels=frames.channels,
        fps=frames.fps,
    )


def extraction_to_proto(result: Extraction, info: ArtifactInfo) -> pb.ExtractResponse:
    schema_id = info.schema.schema_id
    return pb.ExtractResponse(
        vector=schema_pb2.BiomarkerVector(schema_id=schema_id, values=result.vector.tolist()),
        clip_vectors=[
            schema_pb2.BiomarkerVector(schema_id=schema_id, values=v.tolist())
            for v in result.clip_vectors
        ],
        model=provenance_to_proto(info),
        video=pb.VideoSummary(
            frames=result.num_frames, height=result.height, width=result.width, fps=result.fps
        ),
        pixel_hash=result.pixel_hash,
        cached=result.cached,
        sop_instance_uid=result.sop_instance_uid or "",
    )


def lookup_keys(request: pb.LookupRequest) -> tuple[str, str]:
    """``(pixel_hash, sop_instance_uid)`` of a lookup, checked for shape only."""
    digest = request.pixel_hash.strip().lower()
    uid = request.sop_instance_uid.strip()
    if not digest and not uid:
        raise InvalidInput("Lookup needs a pixel_hash or a sop_instance_uid")
    if digest and (len(digest) != 64 or any(c not in "0123456789abcdef" for c in digest)):
        raise InvalidInput("pixel_hash must be 64 hex digits (sha256 of the decoded frames)")
    if len(uid) > 64 or any(c not in "0123456789." for c in uid):
        raise InvalidInput("sop_instance_uid must be a DICOM UID: digits and dots, 64 at most")
    return digest, uid


def lookup_to_proto(result: Extraction | None, info: ArtifactInfo) -> pb.LookupResponse:
    if result is None:
        return pb.LookupResponse(found=False)
    return pb.LookupResponse(found=True, result=extraction_to_proto(result, info))
