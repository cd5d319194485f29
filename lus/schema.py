"""Biomarker schemas as data: ordered binary biomarkers in clinical groups, with a stable id.

A schema is read from JSON (see ``lus/schemas``). Its id combines the name, the version and a hash
of the ordered biomarker keys, so two schemas with the same name but a different order never match.
Every vector, model artifact and expert carries the id of the schema it was made with.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from functools import cache
from importlib import resources
from pathlib import Path

DEFAULT_SCHEMA = "gare2022-lus38"
"""The paper's 38-biomarker schema; used wherever no schema is named."""


ZERO_MEANINGS = ("absent", "unmarked")
"""What a 0 label means: ``absent`` (confirmed absent) or ``unmarked`` (not marked by the
annotators, so possibly present). Declared per group in the schema JSON (``zero_means``)."""


@dataclass(frozen=True)
class Biomarker:
    """One binary biomarker: a level of a group, such as ``b_lines.some``.

    ``zero_means`` says what a 0 label means (``ZERO_MEANINGS``); ``absent_when`` optionally
    names rows where an unmarked 0 is nevertheless a likely absence, as ``column=value`` of the
    manifest (e.g. ``diagnosis=healthy``), for trainers that take negatives only there.
    """

    key: str
    group: str
    level: str
    label: str
    zero_means: str = "absent"
    absent_when: str = ""


@dataclass(frozen=True)
class BiomarkerGroup:
    """A clinical finding split into discrete ranges (its levels), in reading order."""

    key: str
    display_name: str
    biomarkers: tuple[Biomarker, ...]


@dataclass(frozen=True)
class BiomarkerSchema:
    """An ordered list of binary biomarkers, grouped the way a clinician reads them."""

    name: str
    version: int
    description: str
    groups: tuple[BiomarkerGroup, ...]

    @property
    def biomarkers(self) -> tuple[Biomarker, ...]:
        return tuple(b for g in self.groups for b in g.biomarkers)

    @property
    def keys(self) -> tuple[str, ...]:
        return tuple(b.key for b in self.biomarkers)

    def __len__(self) -> int:
        return len(self.biomarkers)

    @property
    def schema_id(self) -> str:
        digest = hashlib.sha256("\n".join(self.keys).encode()).hexdigest()[:12]
        return f"{self.name}.v{self.version}@{digest}"

    def index(self, key: str) -> int:
        """Position of a biomarker key in vectors of this schema."""
        try:
            return self.keys.index(key)
        except ValueError:
            raise KeyError(f"schema {self.name!r} has no biomarker {key!r}") from None

    def group(self, key: str) -> BiomarkerGroup:
        for group in self.groups:
            if group.key == key:
                return group
        raise KeyError(f"schema {self.name!r} has no group {key!r}")

    @classmethod
    def from_dict(cls, data: dict[str, object]) -> BiomarkerSchema:
        groups = []
        for raw in data["groups"]:  # type: ignore[attr-defined]
            key = raw["key"]
            zero_means = str(raw.get("zero_means", "absent"))
            if zero_means not in ZERO_MEANINGS:
                raise ValueError(f"group {key!r}: zero_means must be one of {ZERO_MEANINGS}")
            absent_when = dict(raw.get("absent_when", {}))
            biomarkers = tuple(
                Biomarker(
                    key=f"{key}.{level}",
                    group=key,
                    level=level,
                    label=label,
                    zero_means=zero_means,
                    absent_when=str(absent_when.get(level, "")),
                )
                for level, label in raw["levels"]
            )
            groups.append(BiomarkerGroup(key, raw["display_name"], biomarkers))
        schema = cls(
            name=str(data["name"]),
            version=int(data["version"]),  # type: ignore[call-overload]
            description=str(data.get("description", "")),
            groups=tuple(groups),
        )
        if len(set(schema.keys)) != len(schema.keys):
            raise ValueError(f"schema {schema.name!r} repeats a biomarker key")
        return schema

    def to_dict(self) -> dict[str, object]:
        return {
            "name": self.name,
            "version": self.version,
            "description": self.description,
            "groups": [_group_dict(g) for g in self.groups],
        }


def _group_dict(group: BiomarkerGroup) -> dict[str, object]:
    """A group as in the JSON; label semantics only when declared, so older ids stay byte-equal."""
    out: dict[str, object] = {
        "key": group.key,
        "display_name": group.display_name,
        "levels": [[b.level, b.label] for b in group.biomarkers],
    }
    zero = {b.zero_means for b in group.biomarkers}
    if zero != {"absent"}:
        out["zero_means"] = zero.pop()
    absent_when = {b.level: b.absent_when for b in group.biomarkers if b.absent_when}
    if absent_when:
        out["absent_when"] = absent_when
    return out


def builtin_schema_names() -> list[str]:
    """Names of the schemas shipped in ``lus/schemas``."""
    files = resources.files("lus.schemas").iterdir()
    return sorted(
        f.name.removesuffix(".json").replace("_", "-") for f in files if f.name.endswith(".json")
    )


@cache
def load_schema(name_or_path: str = DEFAULT_SCHEMA) -> BiomarkerSchema:
    """Load a shipped schema by name (``gare2022-lus38``) or any schema JSON file by path."""
    path = Path(name_or_path)
    if path.suffix == ".json" and path.exists():
        return BiomarkerSchema.from_dict(json.loads(path.read_text()))
    resource = resources.files("lus.schemas") / f"{name_or_path.replace('-', '_')}.json"
    if not resource.is_file():
        known = ", ".join(builtin_schema_names())
        raise KeyError(f"unknown biomarker schema {name_or_path!r}; shipped schemas: {known}")
    return BiomarkerSchema.from_dict(json.loads(resource.read_text()))
