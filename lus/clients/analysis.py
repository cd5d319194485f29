"""One video's analysis through both tiers: Extract on the biomarker tier, then Predict on the
expert tier for each task, and on request a DICOM Structured Report of it all.

    with BiomarkerClient(b) as biomarkers, ExpertClient(e) as experts:
        result = analyze(biomarkers, experts, Path("IM0001.dcm").read_bytes(),
                         structured_report=True)
        Path("sr.dcm").write_bytes(result.sr)

``lus analyze`` and the DICOM gateway both call ``analyze``, so a report means the same
wherever it was made. The SR is built here, on the client side, from the bytes the caller
already holds (``lus.sr``, which needs pydicom and highdicom): no PHI travels to the tiers
for it, and the tiers' replies already carry everything the report states.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING

import grpc

from lus.biomarker.v1 import biomarker_service_pb2 as bpb
from lus.clients.biomarker import BiomarkerClient
from lus.clients.expert import ExpertClient
from lus.clients.sniff import looks_like_dicom
from lus.errors import DeadlineExpired, FailedPrecondition, InvalidInput
from lus.expert.v1 import expert_service_pb2 as epb
from lus.rpc.tracing import span
from lus.schema import BiomarkerSchema

if TYPE_CHECKING:
    from pydicom.dataset import Dataset

SR_NEEDS_DICOM = (
    "a structured report needs a DICOM source instance to reference (its Study, Series and SOP"
    " Instance UIDs); this input is not DICOM: send the DICOM file, or ask for no report"
)


@dataclass(frozen=True)
class Analysis:
    """What both tiers said about one video.

    Attributes:
        extract: The biomarker tier's reply: vector (with its ``ModelRef``), per-clip vectors,
            model provenance and notice, video summary, pixel and content hashes.
        answers: One expert answer per task that answered, each with its version, class
            probabilities, contributions, out-of-distribution flag and the biomarker model it
            used (lineage).
        sr: The DICOM Comprehensive SR (Part-10 bytes) when one was asked for; else None.
        info: The biomarker model's description: schema (groups, labels), provenance, input.
        failures: "task: STATUS: message" for each task whose expert refused or failed.
    """

    extract: bpb.ExtractResponse
    answers: tuple[epb.PredictResponse, ...]
    sr: bytes | None = None
    info: bpb.ModelInfo = field(default_factory=bpb.ModelInfo)
    failures: tuple[str, ...] = ()

    @property
    def extraction(self) -> bpb.ExtractResponse:
        """``extract`` under its earlier name (``lus_cli`` callers and tests)."""
        return self.extract


def analyze(
    biomarker: BiomarkerClient,
    expert: ExpertClient | None,
    video: bytes,
    *,
    tasks: Sequence[str] = (),
    structured_report: bool = False,
    timeout_s: float = 60.0,
) -> Analysis:
    """The video's biomarkers, each task's expert answer and, on request, a DICOM SR.

    Args:
        biomarker: Client of the biomarker tier (hash-first lookup, retries, streaming).
        expert: Client of the expert tier's public port; None = biomarkers only.
        video: The file's bytes: DICOM, MP4, AVI, GIF, MOV or MPEG.
        tasks: The tasks to ask; empty = every task the expert tier lists.
        structured_report: Also build a DICOM Comprehensive SR (TID 1500) referencing the
            input; needs a DICOM input and the ``sr`` extra (pydicom, highdicom).
        timeout_s: Budget of the whole analysis: no call starts once it is spent (each call
            still has its client's own deadline).

    Raises:
        InvalidInput: A report was asked for a non-DICOM input, or for a DICOM file without
            the UIDs a report references (checked before any call).
        FailedPrecondition: A report was asked for where pydicom or highdicom is missing.
        DeadlineExpired: ``timeout_s`` passed before every call was made.
        grpc.RpcError: The biomarker tier, or the expert tier's task list, failed; a task
            whose expert fails is listed in ``Analysis.failures`` instead.
    """
    source = _report_source(video) if structured_report else None
    with span("lus.analyze"):  # one trace for Extract and every Predict, when tracing is on
        result = _analyze(biomarker, expert, video, tasks, time.monotonic() + timeout_s)
    if source is None:
        return result
    from lus.sr import build_structured_report, to_part10  # pydicom + highdicom: on request

    return replace(result, sr=to_part10(build_structured_report(source, result)))


def _analyze(
    biomarker: BiomarkerClient,
    expert: ExpertClient | None,
    video: bytes,
    tasks: Sequence[str],
    deadline: float,
) -> Analysis:
    extract = biomarker.extract_bytes(video)
    _check_budget(deadline, "the biomarker model's description")
    info = _model_info(biomarker, extract)
    answers: list[epb.PredictResponse] = []
    failures: list[str] = []
    if expert is not None:
        _check_budget(deadline, "the expert answers")
        for task in tasks or [t.task for t in expert.list_tasks()]:
            _check_budget(deadline, f"the {task} expert's answer")
            try:
                answers.append(expert.predict(task, extract.vector))
            except grpc.RpcError as err:  # e.g. an expert of another schema: report, go on
                code = err.code().name if isinstance(err, grpc.Call) else "UNKNOWN"
                details = err.details() if isinstance(err, grpc.Call) else ""
                failures.append(f"{task}: {code}: {details}")
    return Analysis(extract, tuple(answers), None, info, tuple(failures))


def schema_from_info(info: bpb.ModelInfo) -> BiomarkerSchema:
    """The biomarker schema a ``ModelInfo`` describes (groups and labels, in vector order)."""
    levels: dict[str, list[list[str]]] = {g.key: [] for g in info.schema.groups}
    for b in info.schema.biomarkers:
        levels[b.group].append([b.key.split(".", 1)[1], b.label])
    return BiomarkerSchema.from_dict(
        {
            "name": info.schema.name,
            "version": info.schema.version,
            "groups": [
                {"key": g.key, "display_name": g.display_name, "levels": levels[g.key]}
                for g in info.schema.groups
            ],
        }
    )


def _report_source(video: bytes) -> Dataset:
    """The input's DICOM header (no pixels), checked to be referenceable, before any call."""
    if not looks_like_dicom(video):
        raise InvalidInput(SR_NEEDS_DICOM)
    try:
        from lus.sr import read_source  # pydicom + highdicom: only when a report is asked for
    except ImportError as err:
        raise FailedPrecondition(
            f"a structured report needs pydicom and highdicom ({err.name} is missing): install"
            " the sr extra, pip install 'lus-serving[sr]'"
        ) from None
    return read_source(video)


def _model_info(biomarker: BiomarkerClient, extract: bpb.ExtractResponse) -> bpb.ModelInfo:
    """The description of the model that made this vector: the current model's, unless the
    vector was made with another schema (an upgrade in flight), then its own model's."""
    info = biomarker.model_info()
    if info.schema.schema_id != extract.vector.schema_id and extract.vector.model.version:
        info = biomarker.model_info(extract.vector.model.version)
    return info


def _check_budget(deadline: float, what: str) -> None:
    if time.monotonic() >= deadline:
        raise DeadlineExpired(
            f"the analysis ran out of its time budget before {what}; raise timeout_s"
        )
