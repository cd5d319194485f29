"""One synthetic patient finding: a level per biomarker group, and the labels derived from it.

A :class:`SyntheticCase` is both what the renderer draws and what the manifest labels, so labels
and pixels come from one source. :func:`sample_case` draws clinically coherent cases around a lung
severity score (0-3): it first picks a severity, then a disease pattern compatible with it, then
the levels of that pattern. Severity, the S/F ratio range and the disease category are then
*derived* from the levels, never stored, so they always follow the findings.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import TYPE_CHECKING

import numpy as np

from lus.synthetic.layout import pleural_depth_range

if TYPE_CHECKING:
    from lus.schema import BiomarkerSchema

GROUP_LEVELS: Mapping[str, tuple[str, ...]] = MappingProxyType(
    {
        "a_lines": ("none", "weak", "bold", "stacked", "wide"),
        "b_lines": ("none", "few", "some", "many", "white"),
        "b_line_origin": ("na", "pleura", "sub_pleura"),
        "pleural_thickness": ("lt_1mm", "2_3mm", "4_5mm", "gt_5mm"),
        "pleural_location": ("top", "middle", "bottom"),
        "pleural_indent": ("none", "lt_5mm_few", "lt_5mm_multiple", "5_10mm", "gt_10mm"),
        "pleural_break": ("none", "lt_5mm_few", "lt_5mm_multiple", "5_10mm", "gt_10mm"),
        "consolidation": ("none", "lt_5mm_few", "lt_5mm_multiple", "5_10mm", "gt_10mm"),
        "effusion": ("none", "le_5mm", "gt_5mm"),
    }
)
"""Every biomarker the generator can render, as group -> levels, in the gare2022-lus38 order."""

A_LINE_BASE_LEVELS = ("none", "weak", "bold")
"""The a_lines levels of which exactly one is set; ``stacked``/``wide`` are extra flags."""

SMALL_LESIONS = ("lt_5mm_few", "lt_5mm_multiple")

SF_RATIO_RANGES = (">315", "235-315", "160-235", "<160")
"""S/F ratio (SpO2/FiO2) ranges from normal to severe hypoxaemia, indexed by a noisy severity."""

DISEASES = ("healthy", "covid", "pneumonia", "edema", "effusion", "other")
"""Disease categories that :meth:`SyntheticCase.disease` derives from the findings."""

_SF_NOISE_SCALE = 0.45
_MAX_ATTEMPTS = 500


@dataclass(frozen=True)
class SyntheticCase:
    """The findings of one synthetic cine loop.

    Attributes:
        levels: The chosen level of every group in :data:`GROUP_LEVELS`; for ``a_lines`` one of
            ``none``/``weak``/``bold``.
        a_lines_stacked: A-lines repeat several times (``a_lines.stacked``); needs weak or bold.
        a_lines_wide: A-lines span the full width and are thicker (``a_lines.wide``); needs weak
            or bold.
        sf_noise: A standard-normal draw fixed at sampling time, so that the noisy S/F ratio range
            is a deterministic function of the case.
    """

    levels: Mapping[str, str]
    a_lines_stacked: bool = False
    a_lines_wide: bool = False
    sf_noise: float = 0.0
    _frozen_items: tuple[tuple[str, str], ...] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        levels = dict(self.levels)
        if set(levels) != set(GROUP_LEVELS):
            raise ValueError(f"a case needs exactly the groups {sorted(GROUP_LEVELS)}")
        for group, level in levels.items():
            allowed = A_LINE_BASE_LEVELS if group == "a_lines" else GROUP_LEVELS[group]
            if level not in allowed:
                raise ValueError(f"level {level!r} is not one of {allowed} for group {group!r}")
        if levels["a_lines"] == "none" and (self.a_lines_stacked or self.a_lines_wide):
            raise ValueError("a_lines.stacked/wide need a_lines weak or bold")
        if (levels["b_lines"] == "none") != (levels["b_line_origin"] == "na"):
            raise ValueError("b_line_origin must be 'na' exactly when b_lines is 'none'")
        # A read-only copy: the caller's dict may change later, the case must not.
        ordered = {g: levels[g] for g in GROUP_LEVELS}
        object.__setattr__(self, "levels", MappingProxyType(ordered))
        object.__setattr__(self, "_frozen_items", tuple(ordered.items()))

    def __hash__(self) -> int:
        return hash((self._frozen_items, self.a_lines_stacked, self.a_lines_wide, self.sf_noise))

    def __reduce__(self) -> tuple[type[SyntheticCase], tuple[dict[str, str], bool, bool, float]]:
        # A mappingproxy cannot be pickled; rebuild from a plain dict (multiprocessing, copy).
        args = (dict(self.levels), self.a_lines_stacked, self.a_lines_wide, self.sf_noise)
        return (SyntheticCase, args)

    def active_keys(self) -> tuple[str, ...]:
        """Biomarker keys (``group.level``) that are positive, in :data:`GROUP_LEVELS` order."""
        keys = [f"{group}.{level}" for group, level in self.levels.items()]
        if self.a_lines_stacked:
            keys.insert(1, "a_lines.stacked")
        if self.a_lines_wide:
            keys.insert(1 + self.a_lines_stacked, "a_lines.wide")
        return tuple(keys)

    def labels(self, schema: BiomarkerSchema | None = None) -> np.ndarray:
        """Binary label vector in the order of ``schema`` (default: gare2022-lus38).

        Raises:
            ValueError: The schema names a biomarker this generator does not render, so a label
                of 0 would be a claim about pixels it never drew.
        """
        if schema is None:
            from lus.schema import load_schema

            schema = load_schema()
        unknown = [b.key for b in schema.biomarkers if b.level not in GROUP_LEVELS.get(b.group, ())]
        if unknown:
            raise ValueError(f"the synthetic generator cannot render {unknown}")
        active = set(self.active_keys())
        return np.array([k in active for k in schema.keys], dtype=np.float32)

    def severity(self) -> int:
        """Lung severity score 0-3 from the findings (the scheme :func:`sample_case` aims at)."""
        lv = self.levels
        if lv["b_lines"] == "white" or lv["consolidation"] == "gt_10mm":
            return 3
        if (
            lv["pleural_break"] != "none"
            or lv["consolidation"] != "none"
            or lv["b_lines"] == "many"
        ):
            return 2
        if lv["pleural_indent"] != "none" or lv["b_lines"] in ("few", "some"):
            return 1
        return 0

    def sf_ratio_range(self) -> str:
        """S/F ratio range, monotone in severity with case-fixed noise (a large effusion lowers it).

        Returns:
            One of :data:`SF_RATIO_RANGES`, from ``">315"`` (normal) to ``"<160"`` (severe).
        """
        latent = self.severity() + _SF_NOISE_SCALE * self.sf_noise
        if self.levels["effusion"] == "gt_5mm":
            latent += 0.35
        index = int(np.clip(np.floor(latent + 0.5), 0, len(SF_RATIO_RANGES) - 1))
        return SF_RATIO_RANGES[index]

    def disease(self) -> str:
        """Disease category (one of :data:`DISEASES`) that the pattern of findings points to.

        Rules, first match wins: a large (or B-line-poor 5-10 mm) consolidation is pneumonia;
        diffuse B-lines under a thin smooth pleura are (cardiogenic) edema; a large effusion
        without parenchymal lesions is effusion-dominant; no lung finding is healthy; B-lines
        with an irregular, thick or broken pleura or small consolidations is COVID-like; the
        rest is other.
        """
        lv = self.levels
        b_lines = lv["b_lines"]
        smooth_pleura = (
            lv["pleural_break"] == "none"
            and lv["pleural_indent"] == "none"
            and lv["pleural_thickness"] in ("lt_1mm", "2_3mm")
        )
        if lv["consolidation"] == "gt_10mm" or (
            lv["consolidation"] == "5_10mm" and b_lines not in ("many", "white")
        ):
            return "pneumonia"
        if b_lines in ("many", "white") and smooth_pleura and lv["consolidation"] == "none":
            return "edema"
        if (
            lv["effusion"] == "gt_5mm"
            and lv["consolidation"] == "none"
            and lv["pleural_break"] == "none"
            and b_lines in ("none", "few", "some")
        ):
            return "effusion"
        if self.severity() == 0:
            return "healthy"
        if b_lines != "none" and not (smooth_pleura and lv["consolidation"] == "none"):
            return "covid"
        return "other"


def _choice(rng: np.random.Generator, options: Mapping[str, float]) -> str:
    """One key of ``options`` drawn with the (unnormalised) weights given as values."""
    keys = list(options)
    weights = np.array([options[k] for k in keys], dtype=np.float64)
    return keys[int(rng.choice(len(keys), p=weights / weights.sum()))]


def _chance(rng: np.random.Generator, p: float) -> bool:
    return bool(rng.random() < p)


# Weights lean towards the levels that fewer patterns produce, so every level stays >= ~5 %.
_LESION_LEVELS = {"lt_5mm_few": 0.8, "lt_5mm_multiple": 0.9, "5_10mm": 1.1, "gt_10mm": 1.2}
_SMALL_CONSOLIDATION = {"lt_5mm_few": 1.2, "lt_5mm_multiple": 1.2, "5_10mm": 0.8}
_THIN = {"lt_1mm": 0.55, "2_3mm": 0.45}
_NO_LESION = {
    "pleural_indent": "none",
    "pleural_break": "none",
    "consolidation": "none",
}


def _pattern(rng: np.random.Generator, severity: int) -> tuple[dict[str, str], float, float]:
    """Levels (without A-line flags or location) of a disease pattern of this severity.

    Returns:
        The levels, and the probabilities of the stacked and wide A-line flags.
    """
    lv: dict[str, str] = {"effusion": "none", **_NO_LESION}
    stacked, wide = 0.25, 0.25
    if severity == 0:
        # Healthy: A-lines over a thin continuous pleura, now and then a small effusion.
        lv["a_lines"] = _choice(rng, {"weak": 0.4, "bold": 0.6})
        lv["b_lines"] = "none"
        lv["pleural_thickness"] = _choice(rng, {"lt_1mm": 0.75, "2_3mm": 0.25})
        lv["effusion"] = _choice(rng, {"none": 0.85, "le_5mm": 0.15})
        stacked, wide = 0.45, 0.4
    elif severity == 1:
        kind = _choice(rng, {"covid_early": 0.45, "interstitial": 0.3, "effusion": 0.25})
        lv["a_lines"] = _choice(rng, {"none": 0.3, "weak": 0.5, "bold": 0.2})
        if kind == "covid_early":
            lv["pleural_indent"] = _choice(rng, _LESION_LEVELS)
            lv["b_lines"] = _choice(rng, {"none": 0.2, "few": 0.4, "some": 0.4})
            lv["pleural_thickness"] = _choice(rng, {"2_3mm": 0.45, "4_5mm": 0.35, "gt_5mm": 0.2})
        elif kind == "interstitial":
            lv["b_lines"] = _choice(rng, {"few": 0.5, "some": 0.5})
            lv["pleural_thickness"] = _choice(rng, _THIN)
            if _chance(rng, 0.3):
                lv["pleural_indent"] = "lt_5mm_few"
        else:
            lv["effusion"] = _choice(rng, {"le_5mm": 0.3, "gt_5mm": 0.7})
            lv["b_lines"] = _choice(rng, {"none": 0.3, "few": 0.5, "some": 0.2})
            lv["pleural_thickness"] = _choice(rng, _THIN)
            if lv["b_lines"] == "none" or _chance(rng, 0.3):
                lv["pleural_indent"] = _choice(rng, {"lt_5mm_few": 0.6, "lt_5mm_multiple": 0.4})
    elif severity == 2:
        kind = _choice(rng, {"covid": 0.55, "edema": 0.25, "pneumonia": 0.2})
        lv["a_lines"] = _choice(rng, {"none": 0.65, "weak": 0.3, "bold": 0.05})
        if kind == "covid":
            has_break = _chance(rng, 0.8)
            if has_break:
                lv["pleural_break"] = _choice(rng, _LESION_LEVELS)
            if not has_break or _chance(rng, 0.7):
                lv["consolidation"] = _choice(rng, _SMALL_CONSOLIDATION)
            if _chance(rng, 0.5):
                lv["pleural_indent"] = _choice(rng, _LESION_LEVELS)
            lv["b_lines"] = _choice(rng, {"none": 0.1, "few": 0.15, "some": 0.3, "many": 0.45})
            lv["pleural_thickness"] = _choice(rng, {"2_3mm": 0.2, "4_5mm": 0.45, "gt_5mm": 0.35})
            lv["effusion"] = _choice(rng, {"none": 0.85, "le_5mm": 0.15})
        elif kind == "edema":
            lv["b_lines"] = "many"
            lv["pleural_thickness"] = _choice(rng, _THIN)
            lv["effusion"] = _choice(rng, {"none": 0.4, "le_5mm": 0.3, "gt_5mm": 0.3})
        else:
            lv["consolidation"] = _choice(rng, {"5_10mm": 0.6, **dict.fromkeys(SMALL_LESIONS, 0.2)})
            lv["b_lines"] = _choice(rng, {"none": 0.3, "few": 0.4, "some": 0.3})
            if _chance(rng, 0.4):
                lv["pleural_break"] = _choice(rng, {"lt_5mm_few": 0.5, "lt_5mm_multiple": 0.5})
            lv["pleural_thickness"] = _choice(rng, {"2_3mm": 0.6, "4_5mm": 0.4})
            lv["effusion"] = _choice(rng, {"none": 0.5, "le_5mm": 0.3, "gt_5mm": 0.2})
    else:
        kind = _choice(rng, {"covid": 0.35, "edema": 0.2, "pneumonia": 0.45})
        lv["a_lines"] = "none"
        if kind == "covid":
            lv["b_lines"] = "white"
            if _chance(rng, 0.7):
                lv["pleural_break"] = _choice(rng, _LESION_LEVELS)
            if _chance(rng, 0.5):
                lv["consolidation"] = _choice(rng, _SMALL_CONSOLIDATION)
            if _chance(rng, 0.45):
                lv["pleural_indent"] = _choice(rng, _LESION_LEVELS)
            lv["pleural_thickness"] = _choice(rng, {"4_5mm": 0.4, "gt_5mm": 0.6})
            lv["effusion"] = _choice(rng, {"none": 0.8, "le_5mm": 0.2})
        elif kind == "edema":
            lv["b_lines"] = "white"
            lv["pleural_thickness"] = _choice(rng, _THIN)
            lv["effusion"] = _choice(rng, {"none": 0.2, "le_5mm": 0.3, "gt_5mm": 0.5})
        else:
            lv["consolidation"] = "gt_10mm"
            lv["b_lines"] = _choice(rng, {"none": 0.25, "few": 0.35, "some": 0.3, "many": 0.1})
            if _chance(rng, 0.5):
                lv["pleural_break"] = _choice(rng, _LESION_LEVELS)
            lv["pleural_thickness"] = _choice(rng, {"2_3mm": 0.5, "4_5mm": 0.5})
            lv["effusion"] = _choice(rng, {"none": 0.3, "le_5mm": 0.25, "gt_5mm": 0.45})
            if _chance(rng, 0.2):
                lv["a_lines"] = "weak"
    if lv["b_lines"] == "none":
        lv["b_line_origin"] = "na"
    else:
        lv["b_line_origin"] = _choice(rng, {"pleura": 0.65, "sub_pleura": 0.35})
    return lv, stacked, wide


def _repair(case: SyntheticCase) -> SyntheticCase | None:
    """Make a case drawable by dropping what does not fit, without changing its severity.

    Deep pleurae leave no room for A-line reverberations or a big effusion, exactly as in real
    scans, so the flags are dropped first, then the A-lines, then the effusion shrinks.
    """
    candidates = [case]
    levels = dict(case.levels)
    if case.a_lines_stacked:
        candidates.append(SyntheticCase(levels, False, case.a_lines_wide, case.sf_noise))
    if levels["a_lines"] != "none":
        candidates.append(SyntheticCase({**levels, "a_lines": "none"}, sf_noise=case.sf_noise))
    if levels["effusion"] == "gt_5mm":
        levels = {**levels, "a_lines": "none", "effusion": "le_5mm"}
        candidates.append(SyntheticCase(levels, sf_noise=case.sf_noise))
    if levels["effusion"] == "le_5mm":
        levels = {**levels, "a_lines": "none", "effusion": "none"}
        candidates.append(SyntheticCase(levels, sf_noise=case.sf_noise))
    for candidate in candidates:
        if pleural_depth_range(candidate) is not None:
            return candidate
    return None


LOCATION_WEIGHTS = {"top": 0.45, "middle": 0.4, "bottom": 0.15}


def sample_case(
    rng: np.random.Generator,
    severity: int | None = None,
    *,
    pleural_location: str | None = None,
) -> SyntheticCase:
    """Draw a clinically coherent case whose derived severity is ``severity``.

    Args:
        rng: Source of randomness; the case is a deterministic function of its state.
        severity: Target lung severity score 0-3; uniform over 0-3 when ``None``.
        pleural_location: Fix ``pleural_location`` (e.g. shared by the videos of a patient);
            drawn when ``None``.

    Returns:
        A case that :func:`lus.synthetic.layout.pleural_depth_range` can place in the image and
        whose :meth:`SyntheticCase.severity` equals the target.
    """
    if severity is None:
        severity = int(rng.integers(0, 4))
    if severity not in (0, 1, 2, 3):
        raise ValueError(f"severity must be 0-3, not {severity}")
    if pleural_location is not None and pleural_location not in GROUP_LEVELS["pleural_location"]:
        raise ValueError(f"unknown pleural_location {pleural_location!r}")
    sf_noise = float(rng.standard_normal())
    for _ in range(_MAX_ATTEMPTS):
        levels, p_stacked, p_wide = _pattern(rng, severity)
        levels["pleural_location"] = pleural_location or _choice(rng, LOCATION_WEIGHTS)
        has_a_lines = levels["a_lines"] != "none"
        stacked = has_a_lines and _chance(rng, p_stacked)
        wide = has_a_lines and _chance(rng, p_wide)
        case = _repair(SyntheticCase(levels, stacked, wide, sf_noise))
        if case is not None:
            if case.severity() != severity:  # pragma: no cover - a bug in _pattern
                raise AssertionError(f"pattern for severity {severity} gave {case.severity()}")
            return case
    raise RuntimeError(  # pragma: no cover - every severity has a pattern that fits anywhere
        f"no drawable case of severity {severity} at location {pleural_location!r}"
    )


def label_rates(
    cases: Sequence[SyntheticCase], schema: BiomarkerSchema | None = None
) -> np.ndarray:
    """Fraction of ``cases`` positive for each biomarker of ``schema`` (a sanity check helper)."""
    return np.asarray(np.mean([c.labels(schema) for c in cases], axis=0), dtype=np.float64)
