"""Generate a labelled synthetic data set: video files, a manifest CSV and a notice.

Layout of ``out_dir``::

    videos/video_00000.mp4 ...   one cine loop per row of the manifest
    manifest.csv                 video, patient_id, 38 biomarker columns, severity, sf_ratio,
                                 disease, notice
    NOTICE.txt                   SYNTHETIC_DATA_NOTICE
    generator.json               how the set was made: style version, seed, sizes, the notice

Determinism: every random draw of video ``i`` comes from ``SeedSequence([seed, 0, i])`` and every
draw of patient ``p`` from ``SeedSequence([seed, 1, p])``, so a video never depends on how many
others were generated, and the same seed gives a byte-identical manifest and identical frames.
"""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from tqdm import tqdm

from lus.provenance import SYNTHETIC_DATA_NOTICE
from lus.schema import BiomarkerSchema, load_schema
from lus.synthetic import dicom_cine
from lus.synthetic.case import LOCATION_WEIGHTS, SyntheticCase, sample_case
from lus.synthetic.render import render_frames
from lus.synthetic.style import (
    DEFAULT_STYLE_VERSION,
    RenderStyle,
    jitter_style,
    style_sampler,
)
from lus.synthetic.writer import FORMATS, codec_for, write_video

TASK_COLUMNS = ("severity", "sf_ratio", "disease")
"""Downstream task columns written after the biomarkers."""

MAX_VIDEOS_PER_PATIENT = 4
_SAME_SEVERITY = 0.5  # chance that a video shows its patient's usual severity
_VIDEO_STREAM, _PATIENT_STREAM, _SIZE_STREAM = 0, 1, 2


@dataclass(frozen=True)
class _Patient:
    """What the videos of one patient share."""

    patient_id: str
    style: RenderStyle
    location: str
    severity: int


def _rng(seed: int, stream: int, index: int) -> np.random.Generator:
    return np.random.default_rng(np.random.SeedSequence([seed, stream, index]))


def _patient(seed: int, index: int, style_version: str = DEFAULT_STYLE_VERSION) -> _Patient:
    rng = _rng(seed, _PATIENT_STREAM, index)
    style = style_sampler(style_version)(rng)
    locations = list(LOCATION_WEIGHTS)
    weights = np.array([LOCATION_WEIGHTS[k] for k in locations])
    location = locations[int(rng.choice(len(locations), p=weights / weights.sum()))]
    return _Patient(f"P{index:05d}", style, location, int(rng.integers(0, 4)))


def patient_of_videos(seed: int, n_videos: int, n_patients: int | None = None) -> list[int]:
    """Patient index of each video.

    With ``n_patients=None`` patients get 1-4 consecutive videos, sizes drawn from the seed
    alone, so the assignment of the first videos never changes with ``n_videos``. With a fixed
    ``n_patients`` video ``i`` belongs to patient ``i % n_patients`` (again independent of
    ``n_videos``), which needs ``n_patients <= n_videos <= 4 * n_patients``.

    Raises:
        ValueError: ``n_patients`` cannot give every patient 1-4 videos.
    """
    if n_patients is not None:
        if not n_patients <= n_videos <= MAX_VIDEOS_PER_PATIENT * n_patients:
            raise ValueError(
                f"{n_patients} patients with 1-{MAX_VIDEOS_PER_PATIENT} videos each cannot "
                f"hold {n_videos} videos"
            )
        return [i % n_patients for i in range(n_videos)]
    rng = _rng(seed, _SIZE_STREAM, 0)
    owners: list[int] = []
    patient = 0
    while len(owners) < n_videos:
        owners.extend([patient] * int(rng.integers(1, MAX_VIDEOS_PER_PATIENT + 1)))
        patient += 1
    return owners[:n_videos]


def _video(
    seed: int, index: int, patient: _Patient, *, frames: int, height: int, width: int
) -> tuple[SyntheticCase, np.ndarray]:
    """The case and frames of video ``index``; a function of (seed, index, patient) only."""
    rng = _rng(seed, _VIDEO_STREAM, index)
    # Mixing the patient's severity with a uniform draw keeps the marginal exactly uniform while
    # the videos of one patient stay correlated, as lung zones of one patient are.
    same = rng.random() < _SAME_SEVERITY
    uniform = int(rng.integers(0, 4))
    severity = patient.severity if same else uniform
    case = sample_case(rng, severity, pleural_location=patient.location)
    style = jitter_style(patient.style, rng)
    return case, render_frames(case, rng, frames=frames, height=height, width=width, style=style)


def manifest_header(schema: BiomarkerSchema) -> list[str]:
    """Column names of the manifest for ``schema``."""
    return ["video", "patient_id", *schema.keys, *TASK_COLUMNS, "notice"]


def generate_dataset(
    out_dir: str | Path,
    *,
    n_videos: int,
    seed: int = 0,
    n_patients: int | None = None,
    frames: int = 24,
    height: int = 128,
    width: int = 128,
    fps: float = 15.0,
    formats: Sequence[str] = ("mp4",),
    schema: BiomarkerSchema | None = None,
    progress: bool = True,
    style_version: str = DEFAULT_STYLE_VERSION,
) -> Path:
    """Render and write a synthetic lung-ultrasound data set with its manifest.

    Args:
        out_dir: Output folder (created; existing files of the same names are overwritten).
        n_videos: Number of videos.
        seed: Seed of everything; the same seed gives the same manifest bytes and frames.
        n_patients: Number of patients; ``None`` draws 1-4 videos per patient (see
            :func:`patient_of_videos`).
        frames: Frames per video.
        height: Frame height in pixels.
        width: Frame width in pixels.
        fps: Frame rate written into the files.
        formats: File extensions (without dot, see :data:`lus.synthetic.writer.FORMATS`, plus
            ``dcm``: a DICOM Ultrasound Multi-frame Image, ``lus.synthetic.dicom_cine``); video
            ``i`` uses ``formats[i % len(formats)]`` so a mixed list gives a mixed data set.
        schema: Biomarker schema of the label columns (default gare2022-lus38).
        progress: Show a tqdm progress bar.
        style_version: Look of the loops (:data:`lus.synthetic.style.STYLE_VERSIONS`); the
            labels' semantics are the same in every version.

    Returns:
        Path of the manifest CSV (``out_dir / "manifest.csv"``).

    Raises:
        ValueError: Bad counts, an unsupported format, or a schema with biomarkers the
            generator cannot render.
    """
    if n_videos < 1:
        raise ValueError(f"n_videos must be >= 1, not {n_videos}")
    extensions = [f.lower().lstrip(".") for f in formats]
    if not extensions:
        raise ValueError("formats must name at least one video format")
    known = sorted([*FORMATS, dicom_cine.EXTENSION])
    for extension in extensions:
        if extension == dicom_cine.EXTENSION:
            continue
        if extension not in FORMATS:
            raise ValueError(f"unsupported format {extension!r}; use one of {known}")
        codec_for(extension)  # fail before rendering anything if the encoder is missing
    style_sampler(style_version)  # fail before rendering anything on an unknown version
    schema = schema or load_schema()
    owners = patient_of_videos(seed, n_videos, n_patients)
    out = Path(out_dir)
    (out / "videos").mkdir(parents=True, exist_ok=True)

    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(manifest_header(schema))
    patients: dict[int, _Patient] = {}
    for index in tqdm(range(n_videos), desc="synthetic videos", unit="video", disable=not progress):
        owner = owners[index]
        if owner not in patients:
            patients[owner] = _patient(seed, owner, style_version)
        patient = patients[owner]
        case, video = _video(seed, index, patient, frames=frames, height=height, width=width)
        relative = f"videos/video_{index:05d}.{extensions[index % len(extensions)]}"
        if relative.endswith(f".{dicom_cine.EXTENSION}"):  # what a scanner sends a PACS
            dicom_cine.write_dicom_cine(out / relative, video, fps, patient_id=patient.patient_id)
        else:
            write_video(out / relative, video, fps)
        labels = case.labels(schema).astype(int).tolist()
        tasks = [case.severity(), case.sf_ratio_range(), case.disease()]
        writer.writerow([relative, patient.patient_id, *labels, *tasks, SYNTHETIC_DATA_NOTICE])

    manifest = out / "manifest.csv"
    manifest.write_text(buffer.getvalue(), encoding="utf-8")
    (out / "NOTICE.txt").write_text(SYNTHETIC_DATA_NOTICE + "\n", encoding="utf-8")
    generator = {
        "generator": "lus.synthetic",
        "style_version": style_version,
        "seed": seed,
        "n_videos": n_videos,
        "n_patients": n_patients,
        "frames": frames,
        "height": height,
        "width": width,
        "fps": fps,
        "schema": schema.schema_id,
        "notice": SYNTHETIC_DATA_NOTICE,
    }
    (out / "generator.json").write_text(json.dumps(generator, indent=2) + "\n", encoding="utf-8")
    return manifest
