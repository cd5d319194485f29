"""Style versions of the generator: v1 unchanged, v2 drawn as a scanner shows a clip (sector
on black, no saturation), findings still visible, and the version recorded with the data."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

from lus.synthetic import RenderStyle, generate_dataset, render_frames
from lus.synthetic.scan import convex_map, linear_map
from lus.synthetic.style import (
    DEFAULT_STYLE_VERSION,
    STYLE_VERSIONS,
    jitter_style,
    sample_style,
    sample_style_v2,
    style_sampler,
)
from tests.fakes import synthetic_case


def test_v1_draws_what_it_always_drew() -> None:
    # The v1 sampler's first draws are pinned: v1 data sets stay reproducible.
    style = sample_style(np.random.default_rng(0))
    assert style.version == "v1" and style.probe == "flat"
    assert (style.grain, style.pleura_gain, style.near_field, style.attenuation) == (1, 1, 0, 0)
    assert style.gain == pytest.approx(1.0410885)
    assert style.gamma == pytest.approx(0.8039573)
    jittered = jitter_style(style, np.random.default_rng(1))
    assert 0.8 <= jittered.gain <= 1.2 and 0.3 <= jittered.breathing_mm <= 1.0


def test_versions_are_selectable() -> None:
    assert set(STYLE_VERSIONS) == {"v1", "v2"} and DEFAULT_STYLE_VERSION in STYLE_VERSIONS
    assert style_sampler("v2") is sample_style_v2
    with pytest.raises(ValueError, match="v9"):
        style_sampler("v9")
    probes = [sample_style_v2(np.random.default_rng(s)).probe for s in range(200)]
    assert 0.8 < probes.count("convex") / 200 < 0.97 and "linear" in probes
    assert all(sample_style_v2(np.random.default_rng(s)).version == "v2" for s in range(5))


def test_convex_map_is_a_sector_on_black() -> None:
    scan = convex_map(64, 64, probe_radius=0.8, half_angle=32.0, fill=0.95)
    assert scan.inside[32, 32] == 1.0
    assert scan.inside[:4, :4].max() == 0.0 and scan.inside[:4, -4:].max() == 0.0
    assert scan.inside[-1, :2].max() == 0.0  # the bottom arc leaves the corners black
    centre = scan.rows[:, 32][scan.inside[:, 32] > 0]
    assert np.all(np.diff(centre) > 0)  # depth grows down the axis
    # A row of the scene (one depth) becomes an arc: higher at the sides than on the axis.
    depth = scan.rows - 32
    on_axis = np.abs(depth[:, 32]).argmin()
    at_side = np.abs(depth[:, 16]).argmin()
    assert at_side < on_axis


def test_linear_map_leaves_margins() -> None:
    scan = linear_map(64, 64, fill=0.9, aspect=0.8)
    assert scan.inside[32, 32] == 1.0
    assert scan.inside[32, 0] == 0.0 and scan.inside[0, 32] == 0.0


def _v2(seed: int, **changes: object) -> RenderStyle:
    return replace(sample_style_v2(np.random.default_rng(seed)), noise=0.0, **changes)  # type: ignore[arg-type]


def test_v2_frames_look_like_a_scanner() -> None:
    case = synthetic_case()
    for seed in range(4):
        style = _v2(seed, probe="convex", fill=0.95, top_crop=0.0, background=0.0)
        video = render_frames(
            case, np.random.default_rng(seed), frames=3, height=96, width=96, style=style
        )
        assert video[:, :6, :6].max() == 0 and video[:, :6, -6:].max() == 0  # black corners
        assert video[:, 20:70, 40:56].mean() > 10  # tissue inside the sector
        assert np.percentile(video, 99.9) < 250  # no saturated pleura


def test_v2_findings_stay_visible() -> None:
    none = synthetic_case()
    white = synthetic_case(b_lines="white", b_line_origin="pleura")
    wet = synthetic_case(effusion="gt_5mm")
    style = _v2(7, probe="linear", fill=1.0, aspect=10.0)
    kwargs = {"frames": 2, "height": 96, "width": 96, "style": style}
    dry = render_frames(none, np.random.default_rng(1), **kwargs).astype(float)  # type: ignore[arg-type]
    bright = render_frames(white, np.random.default_rng(1), **kwargs).astype(float)  # type: ignore[arg-type]
    fluid = render_frames(wet, np.random.default_rng(1), **kwargs).astype(float)  # type: ignore[arg-type]
    lung = slice(45, 75)
    assert bright[:, lung].mean() > dry[:, lung].mean() + 20
    deep = slice(70, 92)
    assert fluid[:, deep].mean(axis=(0, 2)).min() < 0.6 * dry[:, deep].mean(axis=(0, 2)).min()


def test_dataset_records_its_style(tmp_path: Path) -> None:
    kwargs = {"n_videos": 2, "frames": 3, "height": 32, "width": 32, "progress": False}
    generate_dataset(tmp_path / "a", style_version="v2", **kwargs)  # type: ignore[arg-type]
    record = json.loads((tmp_path / "a" / "generator.json").read_text())
    assert record["style_version"] == "v2" and record["seed"] == 0
    assert "NOT FOR CLINICAL USE" in record["notice"]
    generate_dataset(tmp_path / "b", **kwargs)  # type: ignore[arg-type]
    default = json.loads((tmp_path / "b" / "generator.json").read_text())
    assert default["style_version"] == DEFAULT_STYLE_VERSION
    with pytest.raises(ValueError, match="style version"):
        generate_dataset(tmp_path / "c", style_version="v0", **kwargs)  # type: ignore[arg-type]
