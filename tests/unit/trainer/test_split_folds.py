"""Fold manifests for out-of-fold checks: patients never on both sides, every row held out once."""

from __future__ import annotations

import csv
from pathlib import Path

import pytest

from trainer.split_folds import main, split_manifest


def _manifest(tmp_path: Path, patients: int = 8, per_patient: int = 3) -> Path:
    path = tmp_path / "data" / "manifest.csv"
    path.parent.mkdir()
    with path.open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["video", "patient_id", "diagnosis"])
        for p in range(patients):
            for v in range(per_patient):
                writer.writerow([f"clips/p{p}_{v}.mp4", f"p{p}", "covid" if p % 2 else "healthy"])
    return path


def _read(path: Path) -> list[dict[str, str]]:
    with path.open(newline="") as handle:
        return list(csv.DictReader(handle))


def test_each_fold_keeps_its_held_out_patients_out_of_training(tmp_path: Path) -> None:
    manifest = _manifest(tmp_path)
    written = split_manifest(manifest, tmp_path / "folds", folds=3, strata="diagnosis", seed=0)
    assert len(written) == 3
    held_out: list[str] = []
    for train_csv, heldout_csv in written:
        train, heldout = _read(train_csv), _read(heldout_csv)
        assert not {r["patient_id"] for r in train} & {r["patient_id"] for r in heldout}
        assert len(train) + len(heldout) == 24
        assert all(Path(r["video"]).is_absolute() for r in train + heldout)
        assert Path(train[0]["video"]).parent == manifest.parent / "clips"
        held_out += [r["video"] for r in heldout]
    assert len(held_out) == len(set(held_out)) == 24


def test_a_missing_column_is_refused_with_its_name(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    manifest = _manifest(tmp_path)
    code = main(["--manifest", str(manifest), "--out", str(tmp_path / "f"), "--strata", "sex"])
    assert code == 2 and "'sex'" in capsys.readouterr().err


def test_a_missing_manifest_is_an_error_line_not_a_traceback(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code = main(["--manifest", str(tmp_path / "absent.csv"), "--out", str(tmp_path / "f")])
    err = capsys.readouterr().err
    assert code == 2 and err.startswith("error:") and "Traceback" not in err
