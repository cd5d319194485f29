from __future__ import annotations

import json
from pathlib import Path

import pytest

from lus.schema import BiomarkerSchema, builtin_schema_names, load_schema


def test_paper_schema_has_38_biomarkers_in_9_groups() -> None:
    schema = load_schema()
    sizes = [len(g.biomarkers) for g in schema.groups]
    assert sizes == [5, 5, 3, 4, 3, 5, 5, 5, 3]
    assert len(schema) == 38
    assert schema.keys[0] == "a_lines.none"
    assert schema.index("b_lines.some") == 7
    assert schema.group("b_lines").display_name == "B-lines"


def test_schema_id_changes_with_order_and_round_trips(tmp_path: Path) -> None:
    schema = load_schema()
    data = schema.to_dict()
    assert BiomarkerSchema.from_dict(data).schema_id == schema.schema_id
    data["groups"][0]["levels"].reverse()  # type: ignore[index]
    path = tmp_path / "reordered.json"
    path.write_text(json.dumps(data))
    assert load_schema(str(path)).schema_id != schema.schema_id


def test_pocus_schema_and_unknown_names() -> None:
    assert {"gare2022-lus38", "pocus-weak6"} <= set(builtin_schema_names())
    assert len(load_schema("pocus-weak6")) == 6
    with pytest.raises(KeyError, match="shipped schemas"):
        load_schema("no-such-schema")
    with pytest.raises(KeyError):
        load_schema().index("b_lines.lots")


def test_duplicate_keys_are_refused() -> None:
    data = load_schema("pocus-weak6").to_dict()
    data["groups"][0]["levels"].append(["b_lines", "again"])  # type: ignore[index]
    with pytest.raises(ValueError, match="repeats"):
        BiomarkerSchema.from_dict(data)
