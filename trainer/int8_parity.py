"""int8 that is safe to serve: quantise, compare with fp32 on held-out clips, record the check.

The comparison runs both ONNX graphs on every clip of held-out (ideally out-of-fold) videos and
records in the int8 file's metadata (``lus.provenance.INT8_PARITY_KEY``): the largest
difference between the two models' served vectors, each biomarker's ROC AUC under both with the
paired difference and its patient-level interval, the share of videos whose expert answer
changes (``trainer.int8_answers``: per task column, each zoo family fit on fp32 vectors of other
patients) and whether it passed the tolerances. The
biomarker server refuses an int8 file whose record is missing or failed
(``biomarker_service.loading``).

Usage::

    python -m trainer.int8_parity --artifact model.safetensors --manifest heldout.csv \\
        --out model-int8.onnx [--quantize static] [--calibration-manifest train.csv] \\
        [--tasks diagnosis,severity] [--expert NAME=expert.onnx ...]
"""

from __future__ import annotations

import argparse
import json
import logging
import math
import sys
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import onnx

from biomarker_service.artifact import ArtifactInfo, load_artifact
from biomarker_service.onnx_backend import OnnxBackend, OnnxOptions
from biomarker_service.onnx_export import Quantization, export_model, quantize
from lus.provenance import INT8_PARITY_KEY
from lus.video import make_clips
from trainer.bootstrap import PatientBootstrap, binary_auc
from trainer.int8_answers import Answerer, answers_record, load_onnx_expert, within_tolerance
from trainer.manifest import read_manifest
from trainer.video_cache import decode_all

logger = logging.getLogger(__name__)

DEFAULT_TASKS = ("diagnosis", "severity")
"""Task columns whose expert answers are compared (those the manifest lacks are skipped)."""


@dataclass(frozen=True)
class ParityTolerance:
    """What int8 may change and still pass.

    Attributes:
        probability: Largest allowed difference of any served probability (vector entry).
        auc: Largest allowed change of any biomarker's ROC AUC on the check's videos.
        expert_answers: Largest allowed share of a task's labelled videos whose answer changes,
            for any expert family (or expert passed); one changed video is always tolerated
            (``trainer.int8_answers.tolerated``), since on a check of 19 videos it is already
            5.3%. 5%: int8 then moves an expert's accuracy by at most 5 points, while on the
            POCUS clips (90 videos, 21 patients; the reduced report in
            docs/reports/pocus/report.md) an accuracy's patient-level 95% interval spans about
            30 (0.41 [0.25, 0.58]), so the change stays well inside the noise; a model that
            flips one video in ten (a calibration gone wrong) is refused.
    """

    probability: float = 0.05
    auc: float = 0.02
    expert_answers: float = 0.05


def served_vectors(backend: OnnxBackend, clips: list[np.ndarray]) -> np.ndarray:
    """``(n_videos, n_biomarkers)``: each video's clip probabilities averaged, as served."""
    return np.stack([backend.predict(c).mean(axis=0) for c in clips])


def parity_record(
    fp32: np.ndarray,
    int8: np.ndarray,
    *,
    keys: tuple[str, ...],
    labels: np.ndarray | None,
    patients: np.ndarray,
    tolerance: ParityTolerance,
    data: str,
    resamples: int = 1000,
    tasks: dict[str, np.ndarray] | None = None,
    experts: Mapping[str, Answerer] | None = None,
) -> dict[str, Any]:
    """The check as plain data: differences, per-biomarker AUCs, expert answers changed,
    tolerances and the verdict.

    Args:
        fp32, int8: Served vectors of the same videos ``(n, len(keys))``.
        keys: Biomarker keys.
        labels: ``(n, len(keys))`` 0/1 labels (NaN unknown), or None (no AUC part).
        patients: Patient id per video (intervals resample patients).
        tolerance: What passes.
        data: Which videos, in words (no patient identifiers).
        resamples: Bootstrap resamples of the AUC differences' intervals.
        tasks: Task name -> label per video (``""`` unlabelled): zoo experts are fit per task.
        experts: Name -> an expert already fit (``trainer.int8_answers.load_onnx_expert``).
            Without tasks and experts the record has no expert part.
    """
    gap = np.abs(fp32 - int8)
    biomarkers = []
    worst_auc = 0.0
    boot = PatientBootstrap(patients, n=resamples, seed=0)
    for j, key in enumerate(keys):
        entry: dict[str, Any] = {"key": key, "max_probability_difference": float(gap[:, j].max())}
        if labels is not None:
            column = labels[:, j]

            def auc(
                rows: np.ndarray, v: np.ndarray, column: np.ndarray = column, j: int = j
            ) -> float:
                known = rows[np.isfinite(column[rows])]
                return binary_auc(column[known] > 0.5, v[known, j])

            every = np.arange(len(column))
            entry["auc_fp32"], entry["auc_int8"] = auc(every, fp32), auc(every, int8)
            diff = boot.interval(lambda r, auc=auc: auc(r, int8) - auc(r, fp32))  # type: ignore[misc]
            entry["auc_difference"] = diff.as_dict()
            if math.isfinite(diff.point):
                worst_auc = max(worst_auc, abs(diff.point))
        biomarkers.append(entry)
    max_gap = float(gap.max()) if gap.size else math.nan
    wanted = bool(tasks) or bool(experts)
    answers = answers_record(fp32, int8, tasks or {}, patients, experts=experts) if wanted else None
    changed = None if answers is None else answers["max_share"]
    passed = bool(
        max_gap <= tolerance.probability
        and worst_auc <= tolerance.auc
        and (answers is None or within_tolerance(answers, tolerance.expert_answers))
    )
    return {
        "passed": passed,
        "videos": len(fp32),
        "data": data,
        "max_probability_difference": max_gap,
        "max_auc_difference": worst_auc if labels is not None else None,
        "max_expert_answers_changed": changed,
        "tolerance": asdict(tolerance),
        "biomarkers": biomarkers,
        "expert_answers": answers,
    }


def write_record(proto: onnx.ModelProto, record: dict[str, Any]) -> None:
    """Put ``record`` into the model's metadata (replacing an earlier one)."""
    kept = [p for p in proto.metadata_props if p.key != INT8_PARITY_KEY]
    del proto.metadata_props[:]
    proto.metadata_props.extend(kept)
    proto.metadata_props.add(key=INT8_PARITY_KEY, value=json.dumps(_finite(record)))


def _finite(value: Any) -> Any:
    """NaN (an AUC undefined on one class) as JSON null."""
    if isinstance(value, dict):
        return {k: _finite(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_finite(v) for v in value]
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def _clips(manifest: Path, info: ArtifactInfo, workers: int) -> tuple[list[np.ndarray], Any]:
    rows = read_manifest(manifest, info.schema)
    videos = decode_all(
        [r.video for r in rows],
        size=info.spec.size,
        crop=info.spec.crop,
        workers=workers,
        progress=False,
    )
    clips = [make_clips(v, info.spec) for v in videos]
    return clips, rows


def quantize_with_parity(
    artifact: Path,
    out: Path,
    *,
    manifest: Path,
    mode: Quantization = "static",
    calibration_manifest: Path | None = None,
    tolerance: ParityTolerance | None = None,
    workers: int = 2,
    tasks: Sequence[str] = DEFAULT_TASKS,
    experts: Mapping[str, Path] | None = None,
) -> dict[str, Any]:
    """Export ``artifact`` to int8 ``out`` with its parity check on ``manifest``'s videos.

    Static quantisation calibrates on ``calibration_manifest``'s clips (the training videos;
    never the check's own), or on the check's videos when none is given (said in the record).
    The file is written whether or not the check passes: the server refuses a failed one.
    Expert answers are compared for each of ``tasks`` the manifest has as a column, and for
    each of ``experts`` (name -> ONNX expert file on this model's vectors).

    Returns:
        The parity record (also in ``out``'s metadata).
    """
    if mode == "none":
        raise ValueError("quantize_with_parity makes int8 models; use lus export-onnx for fp32")
    model, info = load_artifact(artifact)
    # A bad expert file fails here, before minutes of quantising and running both models.
    given = {n: load_onnx_expert(f, len(info.schema.keys)) for n, f in (experts or {}).items()}
    fp32_proto = export_model(model, info)
    clips, rows = _clips(manifest, info, workers)
    if calibration_manifest is not None:
        calibration = np.concatenate(_clips(calibration_manifest, info, workers)[0])
        where = f"calibrated on {calibration_manifest.name}"
    else:
        calibration = np.concatenate(clips)
        where = "calibrated on the check's own videos"
    int8_proto = quantize(fp32_proto, mode, calibration=calibration)
    options = OnnxOptions(device="cpu", intra_op_threads=1)
    fp32 = served_vectors(OnnxBackend(fp32_proto, options), clips)
    int8 = served_vectors(OnnxBackend(int8_proto, options), clips)
    patients = np.array([r.patient_id for r in rows])
    present = [t for t in tasks if t in rows[0].tasks]
    labels_of = {t: np.array([r.tasks[t].strip() for r in rows]) for t in present}
    measured = parity_record(
        fp32,
        int8,
        keys=info.schema.keys,
        labels=np.stack([r.labels for r in rows]),
        patients=patients,
        tolerance=tolerance or ParityTolerance(),
        data=f"{manifest.name}: {len(rows)} videos, {len(set(patients.tolist()))} patients; "
        f"int8 {mode}, {where}",
        tasks=labels_of,
        experts=given,
    )
    record: dict[str, Any] = _finite(measured)
    write_record(int8_proto, record)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_suffix(out.suffix + ".tmp")
    onnx.save(int8_proto, tmp)
    tmp.replace(out)
    logger.info("int8 parity %s: %s", "passed" if record["passed"] else "FAILED", out)
    return record


def main(argv: list[str] | None = None) -> int:
    """``python -m trainer.int8_parity``: see the module docstring."""
    p = argparse.ArgumentParser(prog="python -m trainer.int8_parity", description=__doc__)
    p.add_argument("--artifact", type=Path, required=True)
    p.add_argument("--manifest", type=Path, required=True, help="held-out videos to compare on")
    p.add_argument("--out", type=Path, required=True, help="int8 .onnx file to write")
    p.add_argument("--quantize", choices=["dynamic", "static"], default="static")
    p.add_argument("--calibration-manifest", type=Path, help="videos to calibrate static int8 on")
    p.add_argument("--max-probability-difference", type=float, default=0.05)
    p.add_argument("--max-auc-difference", type=float, default=0.02)
    p.add_argument(
        "--max-expert-answers-changed",
        type=float,
        default=0.05,
        help="largest share of a task's videos whose expert answer may change",
    )
    p.add_argument(
        "--tasks",
        default=",".join(DEFAULT_TASKS),
        help="task columns whose expert answers are compared",
    )
    p.add_argument(
        "--expert",
        action="append",
        default=[],
        metavar="NAME=FILE.onnx",
        help="an expert already fit on this model's vectors whose answers are compared too",
    )
    args = p.parse_args(argv)
    experts = {}
    for given in args.expert:
        name, sep, file = given.partition("=")
        if not sep or not name or not file:
            p.error(f"--expert {given!r}: expected NAME=FILE.onnx")
        experts[name] = Path(file)
    record = quantize_with_parity(
        args.artifact,
        args.out,
        manifest=args.manifest,
        mode=args.quantize,
        calibration_manifest=args.calibration_manifest,
        tolerance=ParityTolerance(
            args.max_probability_difference,
            args.max_auc_difference,
            args.max_expert_answers_changed,
        ),
        tasks=tuple(t.strip() for t in args.tasks.split(",") if t.strip()),
        experts=experts,
    )
    shown = {k: v for k, v in record.items() if k not in ("biomarkers", "expert_answers")}
    print(json.dumps(shown, indent=2))
    return 0 if record["passed"] else 1


if __name__ == "__main__":
    sys.exit(main())
