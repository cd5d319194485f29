"""Synthetic cine loops: coherent labels, pixels that show them, real video files, determinism."""

from __future__ import annotations

import csv
import pickle
from collections import Counter
from dataclasses import replace
from pathlib import Path

import av
import numpy as np
import pytest

from lus.provenance import SYNTHETIC_DATA_NOTICE
from lus.schema import load_schema
from lus.synthetic import (
    RenderStyle,
    SyntheticCase,
    generate_dataset,
    read_video,
    render_frames,
    sample_case,
    write_video,
)
from lus.synthetic.case import DISEASES, GROUP_LEVELS, SF_RATIO_RANGES, label_rates
from lus.synthetic.dataset import manifest_header, patient_of_videos
from lus.synthetic.layout import pleural_depth_range
from lus.synthetic.writer import FORMATS
from tests.fakes import synthetic_case

SCHEMA = load_schema()
# Quiet, fixed nuisance parameters so pixel measurements compare findings, not gain or noise.
PLAIN = RenderStyle(gain=1.0, gamma=1.0, speckle=0.5, noise=0.0, fan=False, depth_u=0.5)


def render(case: SyntheticCase, seed: int = 0, size: int = 128, frames: int = 4) -> np.ndarray:
    rng = np.random.default_rng(seed)
    video = render_frames(case, rng, frames=frames, height=size, width=size, style=PLAIN)
    return video.astype(np.float64)


# --- cases and labels -------------------------------------------------------------------------


def test_generator_levels_are_the_schema() -> None:
    keys = tuple(f"{g}.{level}" for g, levels in GROUP_LEVELS.items() for level in levels)
    assert keys == SCHEMA.keys


def test_sampled_labels_respect_group_constraints() -> None:
    groups = {g.key: [SCHEMA.index(b.key) for b in g.biomarkers] for g in SCHEMA.groups}
    base = [SCHEMA.index(f"a_lines.{level}") for level in ("none", "weak", "bold")]
    flags = [SCHEMA.index("a_lines.stacked"), SCHEMA.index("a_lines.wide")]
    for seed in range(60):
        rng = np.random.default_rng(seed)
        for severity in (None, 0, 1, 2, 3):
            case = sample_case(rng, severity)
            labels = case.labels(SCHEMA)
            assert labels.dtype == np.float32
            assert labels.shape == (38,)
            assert set(np.unique(labels)) <= {0.0, 1.0}
            for key, idx in groups.items():
                if key != "a_lines":
                    assert labels[idx].sum() == 1, (key, case)
            assert labels[base].sum() == 1
            if labels[SCHEMA.index("a_lines.none")]:
                assert labels[flags].sum() == 0
            no_b = labels[SCHEMA.index("b_lines.none")]
            assert no_b == labels[SCHEMA.index("b_line_origin.na")]
            if severity is not None:
                assert case.severity() == severity
            assert pleural_depth_range(case) is not None


def test_every_biomarker_is_learnable() -> None:
    rng = np.random.default_rng(1)
    cases = [sample_case(rng) for _ in range(2000)]
    rates = label_rates(cases, SCHEMA)
    low = {k: r for k, r in zip(SCHEMA.keys, rates, strict=True) if not 0.04 <= r <= 0.96}
    assert not low, f"biomarkers too rare or too common: {low}"
    severities = Counter(c.severity() for c in cases)
    assert all(400 <= severities[s] <= 600 for s in range(4)), severities
    assert set(c.disease() for c in cases) == set(DISEASES)


def test_fixed_pleural_location_is_kept_and_drawable() -> None:
    rng = np.random.default_rng(2)
    for location in GROUP_LEVELS["pleural_location"]:
        for severity in range(4):
            case = sample_case(rng, severity, pleural_location=location)
            assert case.levels["pleural_location"] == location
            assert case.severity() == severity


@pytest.mark.parametrize(
    ("changes", "severity"),
    [
        ({}, 0),
        ({"a_lines": "bold", "effusion": "le_5mm"}, 0),
        ({"b_lines": "few", "b_line_origin": "pleura"}, 1),
        ({"b_lines": "some", "b_line_origin": "sub_pleura"}, 1),
        ({"pleural_indent": "gt_10mm"}, 1),
        ({"pleural_break": "lt_5mm_few"}, 2),
        ({"consolidation": "lt_5mm_multiple"}, 2),
        ({"consolidation": "5_10mm", "pleural_indent": "5_10mm"}, 2),
        ({"b_lines": "many", "b_line_origin": "pleura"}, 2),
        ({"b_lines": "white", "b_line_origin": "pleura"}, 3),
        ({"consolidation": "gt_10mm", "pleural_break": "gt_10mm"}, 3),
    ],
)
def test_severity_is_derived_from_findings(changes: dict[str, str], severity: int) -> None:
    assert synthetic_case(**changes).severity() == severity


def test_invalid_cases_are_rejected() -> None:
    with pytest.raises(ValueError, match="stacked"):
        synthetic_case(a_lines_stacked=True)
    with pytest.raises(ValueError, match="b_line_origin"):
        synthetic_case(b_lines="few")
    with pytest.raises(ValueError, match="level"):
        synthetic_case(a_lines="stacked")
    with pytest.raises(ValueError, match="groups"):
        SyntheticCase({"a_lines": "none"})


def test_case_is_immutable_and_hashable() -> None:
    levels = dict(synthetic_case().levels)
    case = SyntheticCase(levels)
    levels["b_lines"] = "white"
    assert case.levels["b_lines"] == "none"
    assert case == SyntheticCase(dict(case.levels)) and hash(case) == hash(
        SyntheticCase(levels=case.levels)
    )
    with pytest.raises(TypeError):
        case.levels["b_lines"] = "few"  # type: ignore[index]
    assert pickle.loads(pickle.dumps(case)) == case


def test_task_labels_are_deterministic_and_follow_severity() -> None:
    rng = np.random.default_rng(3)
    by_severity: dict[int, list[int]] = {s: [] for s in range(4)}
    for _ in range(800):
        case = sample_case(rng)
        assert case.sf_ratio_range() == case.sf_ratio_range()
        assert case.disease() in DISEASES
        by_severity[case.severity()].append(SF_RATIO_RANGES.index(case.sf_ratio_range()))
        if case.severity() == 0:
            assert case.disease() == "healthy"
    means = [np.mean(by_severity[s]) for s in range(4)]
    assert means == sorted(means) and means[3] - means[0] > 2
    assert synthetic_case(consolidation="gt_10mm").disease() == "pneumonia"
    assert synthetic_case(b_lines="white", b_line_origin="pleura").disease() == "edema"
    assert synthetic_case(effusion="gt_5mm", pleural_indent="lt_5mm_few").disease() == "effusion"
    covid = synthetic_case(b_lines="many", b_line_origin="pleura", pleural_break="5_10mm")
    assert covid.disease() == "covid"


# --- pixels -----------------------------------------------------------------------------------


def test_render_shape_dtype_and_determinism() -> None:
    case = sample_case(np.random.default_rng(4), 2)
    a = render_frames(case, np.random.default_rng(9), frames=5, height=66, width=90)
    b = render_frames(case, np.random.default_rng(9), frames=5, height=66, width=90)
    assert a.shape == (5, 66, 90) and a.dtype == np.uint8
    np.testing.assert_array_equal(a, b)
    assert 10 < a.mean() < 200


def test_b_lines_brighten_the_lung() -> None:
    none, many, white = (
        render(synthetic_case(b_lines=level, b_line_origin="na" if level == "none" else "pleura"))
        for level in ("none", "many", "white")
    )
    lung = slice(64, 120)  # well below a top-third pleura
    assert many[:, lung].mean() > none[:, lung].mean() + 25
    assert white[:, lung].mean() > none[:, lung].mean() + 60
    # Many B-lines are striated (columns differ); white lung is not.
    assert many[:, lung].mean(axis=(0, 1)).std() > 2 * white[:, lung].mean(axis=(0, 1)).std()


def test_effusion_is_a_dark_band() -> None:
    for seed in range(3):
        dry = render(synthetic_case(), seed).mean(axis=(0, 2))
        wet = render(synthetic_case(effusion="gt_5mm"), seed).mean(axis=(0, 2))
        deep = slice(70, 128)
        # The anechoic band is darker than any depth of the dry lung, and at least 7 px thick
        # (>= 8 mm at 1.28 px/mm, less the blurred edges).
        assert wet[deep].min() < 0.5 * dry[deep].min()
        assert (wet[deep] < 0.5 * dry[deep].min()).sum() >= 7


def test_pleural_thickness_levels_are_measurable() -> None:
    thicknesses = []
    for level in ("lt_1mm", "2_3mm", "4_5mm", "gt_5mm"):
        profile = render(synthetic_case(pleural_thickness=level), size=224).mean(axis=(0, 2))
        profile = profile[:100]  # the top-third pleura, above any deep structure
        thicknesses.append(float((profile > 0.5 * profile.max()).sum()))
    assert thicknesses == sorted(thicknesses) and len(set(thicknesses)) == 4, thicknesses
    assert thicknesses[-1] - thicknesses[0] >= 8


def test_a_lines_repeat_the_pleura() -> None:
    def peaks(**changes: str | bool) -> int:
        profile = render(synthetic_case(pleural_thickness="lt_1mm", **changes)).mean(axis=(0, 2))
        lung = profile[30:]
        return int((np.diff((lung > lung.min() + 0.5 * np.ptp(lung)).astype(int)) == 1).sum())

    assert peaks() == 0
    assert peaks(a_lines="bold", a_lines_wide=True) == 1
    assert peaks(a_lines="bold", a_lines_wide=True, a_lines_stacked=True) >= 2


def test_lung_slides_under_a_static_chest_wall() -> None:
    still = replace(PLAIN, breathing_mm=0.0)  # breathing alone would move the wall too
    case = synthetic_case(b_lines="few", b_line_origin="pleura")
    video = render_frames(
        case, np.random.default_rng(0), frames=8, height=128, width=128, style=still
    )
    motion = np.abs(np.diff(video.astype(np.float64), axis=0)).mean(axis=(0, 2))
    assert motion[2:10].max() < 0.5  # chest wall: static
    assert motion[60:110].mean() > 2.0  # lung and B-lines: sliding


# --- files ------------------------------------------------------------------------------------


@pytest.mark.parametrize("extension", sorted(FORMATS))
def test_every_format_reads_back(tmp_path: Path, extension: str) -> None:
    frames = render_frames(
        sample_case(np.random.default_rng(5)),
        np.random.default_rng(5),
        frames=7,
        height=47,
        width=64,
    )
    path = write_video(tmp_path / f"clip.{extension}", frames, fps=15.0)
    decoded = read_video(path)
    assert decoded.shape[0] == 7  # exact for every supported format
    assert decoded.shape[1] in (47, 48) and decoded.shape[2] == 64
    assert np.abs(decoded[:, :47].astype(int) - frames).mean() < 8
    with av.open(str(path)) as container:
        if FORMATS[extension].tags:
            assert container.metadata.get("comment") == SYNTHETIC_DATA_NOTICE


def test_write_video_rejects_bad_input(tmp_path: Path) -> None:
    frames = np.zeros((2, 16, 16), dtype=np.uint8)
    with pytest.raises(ValueError, match="extension"):
        write_video(tmp_path / "clip.webp", frames, 15.0)
    with pytest.raises(ValueError, match="uint8"):
        write_video(tmp_path / "clip.mp4", frames.astype(np.float32), 15.0)


def _decoded(out: Path) -> list[np.ndarray]:
    return [read_video(p) for p in sorted((out / "videos").iterdir())]


def test_dataset_is_deterministic_and_complete(tmp_path: Path) -> None:
    kwargs = dict(n_videos=5, seed=7, frames=6, height=48, width=48, formats=("mp4", "gif"))
    first = generate_dataset(tmp_path / "a", progress=False, **kwargs)  # type: ignore[arg-type]
    second = generate_dataset(tmp_path / "b", progress=False, **kwargs)  # type: ignore[arg-type]
    assert first == tmp_path / "a" / "manifest.csv"
    assert first.read_bytes() == second.read_bytes()
    for x, y in zip(_decoded(tmp_path / "a"), _decoded(tmp_path / "b"), strict=True):
        np.testing.assert_array_equal(x, y)

    # Video i does not depend on how many videos were generated.
    kwargs["n_videos"] = 2
    prefix = generate_dataset(tmp_path / "c", progress=False, **kwargs)  # type: ignore[arg-type]
    lines = first.read_text().splitlines()
    assert prefix.read_text().splitlines() == lines[:3]
    for x, y in zip(_decoded(tmp_path / "c"), _decoded(tmp_path / "a")[:2], strict=True):
        np.testing.assert_array_equal(x, y)

    rows = list(csv.DictReader(first.read_text().splitlines()))
    assert list(rows[0]) == manifest_header(SCHEMA)
    assert [r["video"] for r in rows] == [
        f"videos/video_{i:05d}.{'mp4' if i % 2 == 0 else 'gif'}" for i in range(5)
    ]
    for row in rows:
        assert (tmp_path / "a" / row["video"]).is_file()
        assert row["notice"] == SYNTHETIC_DATA_NOTICE
        assert row["sf_ratio"] in SF_RATIO_RANGES and row["disease"] in DISEASES
        case_labels = [int(row[k]) for k in SCHEMA.keys]
        assert sum(case_labels) in range(9, 12)
    assert (tmp_path / "a" / "NOTICE.txt").read_text().strip() == SYNTHETIC_DATA_NOTICE


def test_patients_own_one_to_four_videos() -> None:
    owners = patient_of_videos(0, 200)
    counts = Counter(owners)
    assert set(counts.values()) <= {1, 2, 3, 4} and len(set(counts.values())) > 1
    assert owners == sorted(owners)
    assert patient_of_videos(0, 50) == owners[:50]
    assert Counter(patient_of_videos(0, 10, n_patients=4)) == {0: 3, 1: 3, 2: 2, 3: 2}
    with pytest.raises(ValueError, match="patients"):
        patient_of_videos(0, 10, n_patients=2)


def test_generate_dataset_rejects_bad_arguments(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="format"):
        generate_dataset(tmp_path, n_videos=1, formats=("webm",), progress=False)
    with pytest.raises(ValueError, match="n_videos"):
        generate_dataset(tmp_path, n_videos=0, progress=False)
