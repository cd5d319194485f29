"""Run a biomarker artifact over a manifest and write one vector per video (the experts' input)."""

from __future__ import annotations

import csv
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from tqdm import tqdm

from biomarker_service.artifact import load_artifact
from biomarker_service.extractor import BiomarkerExtractor
from biomarker_service.torch_backend import TorchModelThread, pick_device
from lus.video import decode_video
from trainer.manifest import read_manifest
from trainer.vectors_csv import MODEL_COLUMN, NOTICE_COLUMN


def extract_vectors(
    artifact: Path, manifest: Path, out: Path, *, device: str = "auto", progress: bool = True
) -> Path:
    """CSV: video, patient_id, one column per biomarker (probabilities), the task columns, then
    ``biomarker_model`` and ``notice``.

    ``biomarker_model`` is the served version of the model that made each row (the version the
    biomarker tier puts in ``ModelRef.version`` for the same backend: the artifact's version,
    with no suffix for PyTorch fp32). ``lus train expert`` records it as the expert's lineage,
    and the expert then answers only vectors of that model.
    """
    model, info = load_artifact(artifact)
    rows = read_manifest(manifest, info.schema)
    with ThreadPoolExecutor(max_workers=1) as pool:
        extractor = BiomarkerExtractor(TorchModelThread(model, pick_device(device)), info, pool)
        task_columns = [c for c in rows[0].tasks if c != "notice"]
        out.parent.mkdir(parents=True, exist_ok=True)
        with out.open("w", newline="") as handle:
            writer = csv.writer(handle)
            writer.writerow(
                [
                    "video",
                    "patient_id",
                    *info.schema.keys,
                    *task_columns,
                    MODEL_COLUMN,
                    NOTICE_COLUMN,
                ]
            )
            for row in tqdm(rows, desc="extract", unit="video", disable=not progress):
                result = extractor.extract_sync(decode_video(row.video))
                writer.writerow(
                    [
                        row.video.relative_to(manifest.parent).as_posix(),
                        row.patient_id,
                        *(f"{v:.6f}" for v in result.vector),
                        *(row.tasks[c] for c in task_columns),
                        result.model_version or extractor.model_version,
                        info.provenance.notice,  # experts fit on these vectors inherit it
                    ]
                )
        extractor.runner.close()
    return out
