"""Small stand-ins the tests build themselves: an untrained biomarker artifact and ONNX experts.

One place for them, so every test that needs "a tiny model" or "a logistic-regression expert"
makes it the same way. torch and scikit-learn are imported inside each helper: a test of the
expert tier that never calls ``untrained_artifact`` loads no torch.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from lus.schema import BiomarkerSchema, load_schema
from lus.video import InputSpec

if TYPE_CHECKING:
    from lus.expert.v1.expert_service_pb2_grpc import ExpertAdminServiceStub
    from lus.synthetic import SyntheticCase

Rule = Callable[[np.ndarray], np.ndarray]
"""Labels for training rows ``(n, n_features)``: one string per row."""


def _first_beats_second(x: np.ndarray) -> np.ndarray:
    return np.where(x[:, 0] > x[:, 1], "covid", "healthy")


def untrained_artifact(
    path: Path,
    *,
    spec: InputSpec,
    version: str = "test",
    width: int = 8,
    schema: BiomarkerSchema | None = None,
    seed: int = 0,
) -> Path:
    """Write an untrained TSM ResNet-18 of ``width`` channels as an artifact at ``path``.

    The same ``seed`` gives the same weights, so two artifacts saved with different
    ``version`` names differ in their name only.
    """
    import torch

    from biomarker_service.artifact import ArtifactInfo, Provenance, save_artifact
    from biomarker_service.model import tsm_resnet18

    schema = schema if schema is not None else load_schema()
    torch.manual_seed(seed)
    model = tsm_resnet18(schema=schema, spec=spec, width=width).eval()
    info = ArtifactInfo(
        version, schema, spec, width, Provenance(training_data="untrained", notice="test only")
    )
    save_artifact(path, model, info)
    return path


def logistic_fit(
    seed: int,
    n_features: int,
    *,
    rule: Rule = _first_beats_second,
    rows: int = 60,
    c: float = 1.0,
    scale: float = 1.0,
) -> tuple[bytes, np.ndarray, np.ndarray]:
    """A logistic regression on vectors uniform on ``[0, scale)`` labelled by ``rule``, as
    ONNX bytes (outputs ``label`` and ``probabilities``, no zipmap), with the vectors and labels
    it saw.

    Each seed gives other vectors and so other weights: versions are told apart by answers.
    """
    from skl2onnx import to_onnx
    from sklearn.linear_model import LogisticRegression

    rng = np.random.default_rng(seed)
    x = rng.random((rows, n_features)).astype(np.float32) * scale
    y = rule(x)
    model = LogisticRegression(C=c, random_state=seed).fit(x, y)
    onnx = bytes(to_onnx(model, x[:1], options={"zipmap": False}).SerializeToString())
    return onnx, x, y


def logistic_onnx(
    seed: int, n_features: int, *, rule: Rule = _first_beats_second, rows: int = 60
) -> bytes:
    """``logistic_fit``'s ONNX bytes only (default: "covid" when feature 0 > feature 1)."""
    return logistic_fit(seed, n_features, rule=rule, rows=rows)[0]


SMALL_SPEC = InputSpec(frames_per_clip=4, size=32, clips=4)
"""Input of the tiny artifacts the biomarker-tier tests serve: 4 clips of 4 frames, 32 px."""

TEST_ARTIFACT_VERSION = "biomarker-test"
"""Model version of the shared ``artifact`` fixture (``tests/integration/biomarker_service``)."""


def encode_mp4(seed: int, frames: int = 12, size: int = 48) -> bytes:
    """A small MP4 (MPEG-4 part 2) of random gray frames; each seed gives other pixels."""
    import io

    import av

    rng = np.random.default_rng(seed)
    buffer = io.BytesIO()
    with av.open(buffer, mode="w", format="mp4") as out:
        stream = out.add_stream("mpeg4", rate=15)
        stream.width = stream.height = size
        stream.pix_fmt = "yuv420p"
        for _ in range(frames):
            gray = rng.integers(0, 255, (size, size), dtype=np.uint8)
            rgb = np.repeat(gray[..., None], 3, axis=2)
            out.mux(stream.encode(av.VideoFrame.from_ndarray(rgb, format="rgb24")))
        out.mux(stream.encode())
    return buffer.getvalue()


SR_PHI = {
    "PatientName": "Doe^Jane^PHIMARK",
    "PatientID": "MRN-PHIMARK-0042",
    "PatientBirthDate": "19700101",
    "PatientSex": "F",
    "AccessionNumber": "ACC-PHIMARK",
    "ReferringPhysicianName": "Ref^Doctor^PHIMARK",
    "StudyID": "STUDY-PHIMARK",
    "StudyDate": "20260102",
    "StudyTime": "101500",
}
"""Patient and study attributes of ``us_cine_dicom``: a report of it copies exactly these."""
SR_FOREIGN_PHI = {
    "OperatorsName": "Operator^PHIMARK-OP",
    "InstitutionName": "PHIMARK-INSTITUTION",
    "InstitutionAddress": "1 PHIMARK-INST-ADDRESS",
    "PatientAddress": "2 PHIMARK-PATIENT-ADDRESS",
    "OtherPatientIDs": "PHIMARK-OTHER-ID",
    "PatientComments": "PHIMARK-COMMENTS",
    "EthnicGroup": "PHIMARK-ETHNIC",
    "StationName": "PHIMARK-STATION",
    "PerformingPhysicianName": "Perf^PHIMARK-PERF",
    "StudyDescription": "PHIMARK-STUDY-DESCRIPTION",
    "SeriesDescription": "PHIMARK-SERIES-DESCRIPTION",
    "DeviceSerialNumber": "PHIMARK-SERIAL",
    "Manufacturer": "PHIMARK-VENDOR",
    "BurnedInAnnotation": "NO",
}
"""Attributes of ``us_cine_dicom`` that no report may copy (all but the last hold "PHIMARK")."""


def us_cine_dicom(frames: int = 20, size: int = 48, seed: int = 0) -> bytes:
    """An Ultrasound Multi-frame Image (Part 10) as a scanner writes it: every UID, the
    patient and study of ``SR_PHI`` and the other identifying data of ``SR_FOREIGN_PHI``."""
    import io

    from pydicom.dataset import Dataset, FileMetaDataset
    from pydicom.uid import ExplicitVRLittleEndian, UltrasoundMultiFrameImageStorage, generate_uid

    rng = np.random.default_rng(seed)
    ds = Dataset()
    ds.file_meta = FileMetaDataset()
    ds.file_meta.MediaStorageSOPClassUID = UltrasoundMultiFrameImageStorage
    ds.file_meta.MediaStorageSOPInstanceUID = generate_uid()
    ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds.SOPClassUID = UltrasoundMultiFrameImageStorage
    ds.SOPInstanceUID = ds.file_meta.MediaStorageSOPInstanceUID
    ds.StudyInstanceUID, ds.SeriesInstanceUID = generate_uid(), generate_uid()
    ds.Modality, ds.SeriesNumber, ds.InstanceNumber = "US", 3, 7
    for keyword, value in {**SR_PHI, **SR_FOREIGN_PHI}.items():
        setattr(ds, keyword, value)
    ds.Rows = ds.Columns = size
    ds.NumberOfFrames = frames
    ds.SamplesPerPixel, ds.PhotometricInterpretation = 1, "MONOCHROME2"
    ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 8, 8, 7, 0
    ds.FrameTime, ds.FrameIncrementPointer = 66.7, 0x00181063
    ds.PixelData = rng.integers(0, 255, (frames, size, size), dtype=np.uint8).tobytes()
    buffer = io.BytesIO()
    ds.save_as(buffer, enforce_file_format=True)
    return buffer.getvalue()


def register_threshold_expert(
    registry: Path, task: str, biomarker_model: str, *, notice: str = "test only"
) -> None:
    """Fit a logistic-regression expert on 60 random 38-d vectors ("high" when biomarker 7 is
    above 0.5, else "low") and register it under ``task`` in the local registry ``registry``,
    its lineage naming ``biomarker_model``: a real zoo expert for servers and benchmarks."""
    from expert_service.card import ExpertDraft, Lineage
    from expert_service.registry import LocalRegistry
    from trainer.experts import fit_expert

    schema = load_schema()
    vectors = np.random.default_rng(1).random((60, len(schema))).astype(np.float32)
    labels = np.where(vectors[:, 7] > 0.5, "high", "low").tolist()
    fitted = fit_expert(vectors, labels, family="logreg", seed=0)
    draft = ExpertDraft(
        task,
        fitted.onnx_bytes,
        schema_id=schema.schema_id,
        classes=fitted.classes,
        n_features=len(schema),
        model_family=fitted.model_family,
        notice=notice,
        lineage=Lineage(biomarker_models=(biomarker_model,)),
    )
    LocalRegistry(registry).register(draft, owner="")


def register_over_admin(
    stub: ExpertAdminServiceStub,
    onnx: bytes,
    *,
    biomarker_model: str,
    metadata: tuple[tuple[str, str], ...],
    promote_to: str = "",
) -> int:
    """Register ``onnx`` (a ``logistic_onnx`` covid/healthy expert over the default schema) as
    task "covid" through a running expert tier's admin ``stub``; return the new version."""
    from lus.expert.v1 import expert_service_pb2 as pb

    schema = load_schema()
    card = stub.RegisterExpert(
        pb.RegisterExpertRequest(
            task="covid",
            onnx_model=onnx,
            schema_id=schema.schema_id,
            classes=["covid", "healthy"],
            n_features=len(schema),
            model_family="logreg",
            promote_to=promote_to,
            lineage=pb.Lineage(biomarker_models=[biomarker_model]),
        ),
        metadata=metadata,
        timeout=30,
    )
    return int(card.version)


def synthetic_case(**changes: str | bool) -> SyntheticCase:
    """A healthy-looking synthetic case (A-lines, thin pleura, nothing else) with some levels,
    or the A-line flags ``a_lines_stacked`` / ``a_lines_wide``, changed."""
    from lus.synthetic import SyntheticCase

    levels = {
        "a_lines": "none",
        "b_lines": "none",
        "b_line_origin": "na",
        "pleural_thickness": "2_3mm",
        "pleural_location": "top",
        "pleural_indent": "none",
        "pleural_break": "none",
        "consolidation": "none",
        "effusion": "none",
    }
    flags = {k: bool(changes.pop(k)) for k in ("a_lines_stacked", "a_lines_wide") if k in changes}
    levels.update({k: str(v) for k, v in changes.items()})
    return SyntheticCase(levels, **flags)


TINY_EVAL = {
    "schema": "gare2022-lus38",
    "folds": 3,
    "frames": 4,
    "size": 32,
    "clips": 1,
    "width": 4,
    "epochs": 1,
    "batch_size": 8,
    "lr": 1e-3,
    "device": "cpu",
    "zoo_families": ("decision_tree", "random_forest", "svm"),
    "zoo_seeds": (0,),
    "bootstrap": 200,
    "progress": False,
}
"""``EvalConfig`` settings that make ``lus eval`` run on tiny synthetic clips in seconds."""
