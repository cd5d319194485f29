"""DICOM SR of an analysis: built, written, read back with pydicom and highdicom, checked
against the source's UIDs, the findings and the PHI it must not carry; dciodvfy where installed."""

from __future__ import annotations

import copy
import io
import logging
import shutil
import subprocess
from pathlib import Path

import grpc
import highdicom as hd
import numpy as np
import pydicom
import pytest
from pydicom.dataset import Dataset
from pydicom.sr.codedict import codes as std

from lus.biomarker.v1 import biomarker_service_pb2 as bpb
from lus.biomarker.v1 import schema_pb2
from lus.clients.analysis import Analysis
from lus.errors import InvalidInput, LusError
from lus.expert.v1 import expert_service_pb2 as epb
from lus.schema import BiomarkerSchema, load_schema
from lus.sr import (
    NOT_FOR_CLINICAL_USE,
    SourceNotReferenceable,
    build_structured_report,
    codes,
    read_source,
    to_part10,
)
from lus.sr.source import PATIENT_AND_STUDY
from tests.fakes import SR_FOREIGN_PHI, SR_PHI, us_cine_dicom

MODEL = "gare2022-lus38-test+int8-static"
SHA = "ab" * 32


def model_info(schema: BiomarkerSchema) -> bpb.ModelInfo:
    info = bpb.ModelInfo()
    info.schema.schema_id, info.schema.name = schema.schema_id, schema.name
    info.schema.version = schema.version
    for g in schema.groups:
        info.schema.groups.add(key=g.key, display_name=g.display_name)
    for b in schema.biomarkers:
        info.schema.biomarkers.add(key=b.key, group=b.group, label=b.label)
    return info


def answer(
    task: str = "severity",
    probs: dict[str, float] | None = None,
    distribution: int = epb.DISTRIBUTION_OUT,
) -> epb.PredictResponse:
    probs = probs or {"0": 0.1, "1": 0.15, "2": 0.7, "3": 0.05}
    reply = epb.PredictResponse(
        task=task,
        version=3,
        label=max(probs, key=lambda k: probs[k]),
        notice="test expert, not for clinical use",
        distribution=distribution,  # type: ignore[arg-type]
        ood_score=3.25 if distribution != epb.DISTRIBUTION_UNASSESSED else 0.0,
        ood_threshold=2.5 if distribution != epb.DISTRIBUTION_UNASSESSED else 0.0,
        alias="production",
        biomarker_model_version=MODEL,
    )
    for label, p in probs.items():
        reply.probabilities.add(label=label, probability=p)
    return reply


def analysis(*answers: epb.PredictResponse, seed: int = 0) -> Analysis:
    schema = load_schema()
    extract = bpb.ExtractResponse(
        vector=schema_pb2.BiomarkerVector(
            schema_id=schema.schema_id,
            values=np.random.default_rng(seed).random(len(schema)).tolist(),
            model=schema_pb2.ModelRef(version=MODEL, artifact_sha256=SHA, precision="int8-static"),
        ),
        model=bpb.ModelProvenance(
            model_version=MODEL, clinical_use=False, notice="SYNTHETIC DATA - NOT FOR CLINICAL USE."
        ),
        pixel_hash="cd" * 32,
        content_sha256="ef" * 32,
    )
    return Analysis(extract, answers, None, model_info(schema), ())


@pytest.fixture(scope="module")
def source_bytes() -> bytes:
    return us_cine_dicom()


@pytest.fixture(scope="module")
def source(source_bytes: bytes) -> Dataset:
    return pydicom.dcmread(io.BytesIO(source_bytes))


@pytest.fixture(scope="module")
def written(source: Dataset) -> bytes:
    return to_part10(
        build_structured_report(
            source,
            analysis(
                answer(), answer("disease", {"covid": 0.6, "healthy": 0.4}, epb.DISTRIBUTION_IN)
            ),
        )
    )


def read_back(data: bytes) -> tuple[hd.sr.ComprehensiveSR, hd.sr.MeasurementReport]:
    sr = hd.sr.srread(io.BytesIO(data))
    assert isinstance(sr, hd.sr.ComprehensiveSR)
    return sr, hd.sr.MeasurementReport.from_sequence([sr])


def coded(value: object) -> hd.sr.CodedConcept:
    assert isinstance(value, hd.sr.CodedConcept), value
    return value


def texts(sr: Dataset, concept: hd.sr.CodedConcept) -> list[str]:
    return [
        item.TextValue
        for item in hd.sr.utils.find_content_items(sr, name=concept, recursive=True)
        if item.ValueType == "TEXT"
    ]


def test_round_trip_references_the_source_and_copies_only_patient_and_study(
    source: Dataset, written: bytes
) -> None:
    sr, _ = read_back(written)
    assert pydicom.dcmread(io.BytesIO(written)).SOPClassUID == pydicom.uid.ComprehensiveSRStorage
    assert sr.Modality == "SR" and sr.Manufacturer == "lus-serving"
    for keyword in PATIENT_AND_STUDY:
        assert str(sr.get(keyword)) == str(source.get(keyword)), keyword
    assert sr.SeriesInstanceUID != source.SeriesInstanceUID
    assert sr.SOPInstanceUID != source.SOPInstanceUID
    (evidence,) = sr.CurrentRequestedProcedureEvidenceSequence
    assert evidence.StudyInstanceUID == source.StudyInstanceUID
    (series,) = evidence.ReferencedSeriesSequence
    assert series.SeriesInstanceUID == source.SeriesInstanceUID
    (instance,) = series.ReferencedSOPSequence
    assert (instance.ReferencedSOPClassUID, instance.ReferencedSOPInstanceUID) == (
        source.SOPClassUID,
        source.SOPInstanceUID,
    )
    assert "NOT FOR CLINICAL USE" in sr.SeriesDescription
    _, report = read_back(written)
    referencing = report.get_image_measurement_groups(
        referenced_sop_instance_uid=source.SOPInstanceUID
    )
    assert len(referencing) == len(load_schema().groups) + 2  # every group: 9 findings, 2 experts


def test_no_other_source_attribute_or_value_is_copied(source: Dataset, written: bytes) -> None:
    sr = pydicom.dcmread(io.BytesIO(written))
    for keyword, value in SR_FOREIGN_PHI.items():
        assert str(sr.get(keyword, "")) != value, keyword
    for marker in [v for v in SR_FOREIGN_PHI.values() if "PHIMARK" in v]:
        assert marker.encode() not in written, marker
    copied = {
        e.keyword for e in sr if e.keyword in source and sr[e.tag].value == source[e.tag].value
    }
    assert copied <= {*PATIENT_AND_STUDY, "SpecificCharacterSet"}


def test_biomarker_groups_carry_every_probability_and_the_most_likely_level(written: bytes) -> None:
    schema = load_schema()
    values = dict(zip(schema.keys, analysis(seed=0).extract.vector.values, strict=True))
    _, report = read_back(written)
    groups = [
        g
        for g in report.get_image_measurement_groups()
        if g.finding_category == codes.BIOMARKER_FINDINGS
    ]
    assert [coded(g.finding_type).meaning for g in groups] == [
        g.display_name for g in schema.groups
    ]
    for group, found in zip(schema.groups, groups, strict=True):
        measured = {m.name.value: m.value for m in found.get_measurements()}
        expected = {
            codes.biomarker_code(schema.name, b.key, "").value: values[b.key]
            for b in group.biomarkers
        }
        assert measured == pytest.approx(expected, abs=1e-6)
        assert all(m.unit == std.UCUM.NoUnits for m in found.get_measurements())
        (most_likely,) = found.get_qualitative_evaluations(name=codes.MOST_LIKELY_LEVEL)
        top = max(group.biomarkers, key=lambda b: values[b.key])
        assert (
            coded(most_likely.value).value == codes.biomarker_code(schema.name, top.key, "").value
        )
    assert sum(len(g.get_measurements()) for g in groups) == 38


def test_expert_answers_carry_class_probabilities_version_lineage_and_ood(written: bytes) -> None:
    sr, report = read_back(written)
    groups = report.get_image_measurement_groups(finding_type=codes.EXPERT_ANSWER)
    assert [g.tracking_identifier for g in groups] == ["expert severity v3", "expert disease v3"]
    severity, disease = groups
    measured = {m.name.meaning: m.value for m in severity.get_measurements()}
    assert measured == pytest.approx(
        {
            "severity: 0": 0.1,
            "severity: 1": 0.15,
            "severity: 2": 0.7,
            "severity: 3": 0.05,
            "Out-of-distribution score": 3.25,
            "Out-of-distribution threshold": 2.5,
        },
        abs=1e-6,
    )
    evaluations = {e.name.value: e.value for e in severity.get_qualitative_evaluations()}
    assert coded(evaluations[codes.PREDICTED_CLASS.value]).meaning == "severity: 2"
    assert evaluations[codes.OUT_OF_DISTRIBUTION.value] == std.SCT.Yes
    disease_evaluations = {e.name.value: e.value for e in disease.get_qualitative_evaluations()}
    assert disease_evaluations[codes.OUT_OF_DISTRIBUTION.value] == std.SCT.No
    algorithm = texts(sr, std.DCM.AlgorithmParameters)
    assert f"biomarker_model={MODEL}" in algorithm and "alias=production" in algorithm
    assert "LUS expert severity" in texts(sr, std.DCM.AlgorithmName)
    assert "3" in texts(sr, std.DCM.AlgorithmVersion)


def test_unassessed_expert_has_no_ood_evaluation(source: Dataset) -> None:
    report = build_structured_report(
        source, analysis(answer(distribution=epb.DISTRIBUTION_UNASSESSED))
    )
    _, parsed = read_back(to_part10(report))
    (group,) = parsed.get_image_measurement_groups(finding_type=codes.EXPERT_ANSWER)
    names = {e.name.value for e in group.get_qualitative_evaluations()}
    assert names == {codes.PREDICTED_CLASS.value}


def test_notice_lineage_and_device_observer(written: bytes) -> None:
    sr, report = read_back(written)
    notices = texts(sr, codes.USAGE_NOTICE)
    assert (
        notices[0] == NOT_FOR_CLINICAL_USE and "SYNTHETIC DATA - NOT FOR CLINICAL USE." in notices
    )
    assert texts(sr, codes.BIOMARKER_MODEL) == [MODEL]
    assert texts(sr, codes.BIOMARKER_ARTIFACT_SHA256) == [SHA]
    assert texts(sr, codes.BIOMARKER_SCHEMA) == [load_schema().schema_id]
    assert texts(sr, codes.VIDEO_CONTENT_SHA256) == ["ef" * 32]
    (clinical,) = hd.sr.utils.find_content_items(sr, name=codes.CLINICAL_USE, recursive=True)
    assert clinical.ConceptCodeSequence[0].CodeValue == std.SCT.No.value
    (device,) = report.get_observer_contexts(observer_type=std.DCM.Device)
    attributes = device.observer_identifying_attributes
    assert isinstance(attributes, hd.sr.DeviceObserverIdentifyingAttributes)
    assert attributes.model_name == MODEL
    assert sr.CodingSchemeIdentificationSequence[0].CodingSchemeDesignator == codes.SCHEME


def test_nothing_of_the_source_reaches_the_logs(
    source_bytes: bytes, caplog: pytest.LogCaptureFixture
) -> None:
    source = read_source(source_bytes)
    with caplog.at_level(logging.DEBUG):
        to_part10(build_structured_report(source, analysis(answer())))
    secrets = [
        *SR_PHI.values(),
        *SR_FOREIGN_PHI.values(),
        source.StudyInstanceUID,
        source.SeriesInstanceUID,
        source.SOPInstanceUID,
    ]
    logged = caplog.text + "".join(str(r.args) for r in caplog.records)
    assert not [s for s in secrets if len(s) > 4 and s in logged]


@pytest.mark.parametrize("missing", ["StudyInstanceUID", "SeriesInstanceUID", "SOPInstanceUID"])
def test_a_source_without_a_uid_is_refused_naming_it_not_its_data(
    source: Dataset, missing: str
) -> None:
    incomplete = copy.deepcopy(source)
    delattr(incomplete, missing)
    with pytest.raises(SourceNotReferenceable) as caught:
        build_structured_report(incomplete, analysis(answer()))
    assert isinstance(caught.value, LusError)
    assert caught.value.code == grpc.StatusCode.INVALID_ARGUMENT
    assert missing in str(caught.value)
    assert not any(v in str(caught.value) for v in SR_PHI.values())


def test_bytes_that_are_not_dicom_are_refused() -> None:
    with pytest.raises(SourceNotReferenceable):
        read_source(b"\x00" * 200)


def test_an_analysis_of_another_schema_is_refused(source: Dataset) -> None:
    mismatched = analysis(answer())
    mismatched.info.schema.schema_id = "other.v1@000000000000"
    with pytest.raises(InvalidInput, match="ModelInfo of the model that made the vector"):
        build_structured_report(source, mismatched)


@pytest.mark.skipif(shutil.which("dciodvfy") is None, reason="dicom3tools is not installed")
def test_dciodvfy_finds_no_errors(written: bytes, tmp_path: Path) -> None:
    path = tmp_path / "sr.dcm"
    path.write_bytes(written)
    run = subprocess.run(["dciodvfy", str(path)], capture_output=True, text=True, check=False)
    output = run.stdout + run.stderr
    assert "Error" not in output, output
    unexpected = [
        line
        for line in output.splitlines()
        if line.startswith("Warning") and f"<{codes.SCHEME}>" not in line
    ]
    assert not unexpected, unexpected


def test_docs_table_matches_the_codes() -> None:
    doc = (Path(__file__).resolve().parents[3] / "docs" / "sr.md").read_text()
    assert codes.with_table(doc) == doc, "regenerate: python -m lus.sr docs/sr.md"


def test_codes_fit_dicom_and_never_collide() -> None:
    rows = [
        code
        for name in ("gare2022-lus38", "pocus-weak6")
        for _, code in codes.schema_codes(load_schema(name))
    ]
    rows += list(codes.FIXED)
    values = [c.value for c in rows]
    assert len(set(values)) == len(values)
    assert all(len(v) <= 16 for v in values) and all(len(c.meaning) <= 64 for c in rows)
    assert codes.class_code("severity", "2") == codes.class_code("severity", "2")
    assert codes.class_code("severity", "2").value != codes.class_code("disease", "2").value
