"""The only module of the GPU tier that touches protobuf: requests in, responses out."""

from __future__ import annotations

import re
from dataclasses import dataclass

from biomarker_service.artifact import ArtifactInfo
from biomarker_service.extractor import Extraction
from biomarker_service.identity import RawUpload
from biomarker_service.lineage import ModelLineage
from lus.biomarker.v1 import biomarker_service_pb2 as pb
from lus.biomarker.v1 import schema_pb2
from lus.errors import InvalidInput
from lus.schema import BiomarkerSchema


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


def provenance_to_proto(info: ArtifactInfo, served: ModelLineage) -> pb.ModelProvenance:
    """The served model's provenance, under the version its vectors are stored by."""
    p = info.provenance
    return pb.ModelProvenance(
        model_version=served.version,
        architecture=f"TSM ResNet-18 (width {info.width})",
        training_data=p.training_data,
        created_at=p.created_at,
        clinical_use=p.clinical_use,
        notice=p.notice,
    )


def model_ref_to_proto(model: ModelLineage) -> schema_pb2.ModelRef:
    return schema_pb2.ModelRef(
        version=model.version, artifact_sha256=model.artifact_sha256, precision=model.precision
    )


def model_info_to_proto(
    info: ArtifactInfo, served: ModelLineage, served_versions: list[str] | None = None
) -> pb.ModelInfo:
    """One served model's schema, provenance and input spec, and every version served beside it
    (``served_versions``, the current one first; just this one when not given)."""
    spec = info.spec
    return pb.ModelInfo(
        served_versions=served_versions if served_versions is not None else [served.version],
        schema=schema_to_proto(info.schema),
        model=provenance_to_proto(info, served),
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


def raw_frames_from_proto(frames: pb.RawFrames) -> RawUpload:
    """The frames as uploaded; converted (and checked against their shape) in the decode pool."""
    return RawUpload(
        pixels=frames.pixels,
        count=frames.count,
        height=frames.height,
        width=frames.width,
        channels=frames.channels,
        fps=frames.fps,
    )


def extraction_to_proto(
    result: Extraction, info: ArtifactInfo, served: ModelLineage
) -> pb.ExtractResponse:
    """The reply for one request: every vector names the model that computed it.

    A stored vector of another served version (``Lookup.model_version``) gets that version as
    its provenance and nothing else this server cannot vouch for.
    """
    schema_id = info.schema.schema_id
    ref = model_ref_to_proto(result.model)
    if result.model.version == served.version:
        provenance = provenance_to_proto(info, served)
    else:
        provenance = pb.ModelProvenance(
            model_version=result.model.version,
            clinical_use=False,
            notice=(
                "computed by a biomarker model this server does not run; ask a server that "
                "runs it for its provenance and notice"
            ),
        )
    return pb.ExtractResponse(
        vector=schema_pb2.BiomarkerVector(
            schema_id=schema_id, values=result.vector.tolist(), model=ref
        ),
        clip_vectors=[
            schema_pb2.BiomarkerVector(schema_id=schema_id, values=v.tolist(), model=ref)
            for v in result.clip_vectors
        ],
        model=provenance,
        video=pb.VideoSummary(
            frames=result.num_frames, height=result.height, width=result.width, fps=result.fps
        ),
        pixel_hash=result.pixel_hash,
        cached=result.cached,
        sop_instance_uid=result.sop_instance_uid or "",
        content_sha256=result.content_sha256,
    )


@dataclass(frozen=True)
class LookupKeys:
    """A lookup's keys, checked for shape: hashes as 64 lower-case hex digits."""

    content_sha256: str
    pixel_hash: str
    model_version: str
    sop_instance_uid: str


_SHA256 = re.compile(r"[0-9a-f]{64}")
_UID = re.compile(r"[0-9.]{1,64}")
_VERSION = re.compile(r"[A-Za-z0-9][A-Za-z0-9._+@-]{0,127}")


def lookup_keys(request: pb.LookupRequest) -> LookupKeys:
    """The keys of a lookup, checked for shape only (messages echo none of the values).

    Raises:
        InvalidInput: no content key (a UID alone is refused: it is not a key), or a field that
            cannot be what it names.
    """
    content = request.content_sha256.strip().lower()
    digest = request.pixel_hash.strip().lower()
    uid = request.sop_instance_uid.strip()
    if not content and not digest:
        if uid:
            raise InvalidInput(
                "Lookup by sop_instance_uid alone is refused: a UID is metadata, not a key "
                "(modalities and anonymisers reuse UIDs for other images); send content_sha256 "
                "(sha256 of the file's bytes) and the UID with it if it should be echoed"
            )
        raise InvalidInput("Lookup needs content_sha256 (sha256 of the file's bytes) or pixel_hash")
    if content and not _SHA256.fullmatch(content):
        raise InvalidInput("content_sha256 must be 64 hex digits (sha256 of the file's bytes)")
    if digest and not _SHA256.fullmatch(digest):
        raise InvalidInput("pixel_hash must be 64 hex digits (sha256 of the decoded frames)")
    if uid and not _UID.fullmatch(uid):
        raise InvalidInput("sop_instance_uid must be a DICOM UID: digits and dots, 64 at most")
    version = requested_version(request.model_version)
    return LookupKeys(content, digest, version, uid)


def requested_version(model_version: str) -> str:
    """A request's ``model_version``, checked for shape; "" means the current model.

    Raises:
        InvalidInput: it cannot be a model version (so that no message echoes arbitrary text).
    """
    version = model_version.strip()
    if version and not _VERSION.fullmatch(version):
        raise InvalidInput(
            "model_version must be a served model version as GetModelInfo reports it "
            "(letters, digits and . _ + @ -, 128 at most)"
        )
    return version


def lookup_to_proto(
    result: Extraction | None, info: ArtifactInfo, served: ModelLineage
) -> pb.LookupResponse:
    if result is None:
        return pb.LookupResponse(found=False)
    return pb.LookupResponse(found=True, result=extraction_to_proto(result, info, served))
