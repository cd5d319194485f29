"""``lus domain-gap`` end to end on tiny generated sets, and on a few real clips when the
shared POCUS data is present (skipped otherwise)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from lus.provenance import SYNTHETIC_DATA_NOTICE
from lus.synthetic import generate_dataset
from lus.synthetic.style import STYLE_VERSIONS
from lus_cli.cli import main
from lus_cli.domain_gap import STYLE_CHOICES

POCUS = Path(__file__).resolve().parents[3] / ".." / "shared" / "data" / "pocus" / "manifest.csv"
TINY = ["--synthetic-size", "32", "--synthetic-frames", "4", "--size", "32"]
FAST = ["--frames-per-video", "2", "--folds", "2", "--bootstrap", "20"]


def test_domain_gap_on_generated_sets(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    # "Real" here is a v1 generated set: the command needs only video and patient_id columns.
    real = generate_dataset(
        tmp_path / "real", n_videos=8, seed=3, frames=4, height=32, width=32, progress=False
    )
    out = tmp_path / "report"
    argv = ["domain-gap", "--manifest", str(real), "--synthetic-videos", "8", "--style", "v2"]
    assert main([*argv, *TINY, *FAST, "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "domain AUC (logistic)" in printed and "style v2" in printed

    record = json.loads((out / "domain_gap.json").read_text())
    assert record["style_version"] == "v2"
    assert set(record["auc"]) == {"logistic", "boosting"}
    assert record["n_real"] == record["n_synthetic"] == 8
    assert 0.0 <= record["auc"]["logistic"]["point"] <= 1.0
    assert "--style v2" in record["command"] and "--synthetic-videos 8" in record["command"]
    report = (out / "domain_gap.md").read_text()
    assert "NOT FOR CLINICAL USE" in report and SYNTHETIC_DATA_NOTICE in report
    assert record["command"] in report and "| logistic |" in report


def test_domain_gap_reads_an_existing_synthetic_set(tmp_path: Path) -> None:
    kwargs = {"n_videos": 6, "frames": 4, "height": 32, "width": 32, "progress": False}
    real = generate_dataset(tmp_path / "a", seed=1, **kwargs)  # type: ignore[arg-type]
    synthetic = generate_dataset(tmp_path / "b", seed=2, style_version="v1", **kwargs)  # type: ignore[arg-type]
    out = tmp_path / "report"
    argv = ["domain-gap", "--manifest", str(real), "--synthetic-manifest", str(synthetic)]
    assert main([*argv, "--size", "32", *FAST, "--out", str(out)]) == 0
    record = json.loads((out / "domain_gap.json").read_text())
    assert record["style_version"] == "v1"
    assert "--synthetic-manifest" in record["command"]


def test_unknown_style_is_a_clear_error(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert set(STYLE_CHOICES) == set(STYLE_VERSIONS)  # the parsers list every version
    argv = ["domain-gap", "--manifest", "m.csv", "--style", "v9", "--out", str(tmp_path / "o")]
    for command in (argv, ["synth", str(tmp_path / "s"), "--style", "v9"]):
        with pytest.raises(SystemExit) as exit_info:
            main(command)
        assert exit_info.value.code == 2
        assert "invalid choice: 'v9'" in capsys.readouterr().err


@pytest.mark.skipif(not POCUS.is_file(), reason="shared POCUS data not present")
def test_domain_gap_on_a_few_real_clips(tmp_path: Path) -> None:
    out = tmp_path / "report"
    argv = ["domain-gap", "--manifest", str(POCUS), "--limit", "8", "--synthetic-videos", "8"]
    assert main([*argv, "--style", "v2", *TINY, *FAST, "--out", str(out)]) == 0
    record = json.loads((out / "domain_gap.json").read_text())
    assert record["n_real"] == 8 and record["real_groups"] >= 2
