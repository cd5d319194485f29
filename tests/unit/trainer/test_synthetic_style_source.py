"""The generator style behind ``--init synthetic`` is chosen on the command line and recorded."""

from __future__ import annotations

import argparse
from pathlib import Path

from lus_cli.eval import add_eval_parser, config_from_args
from trainer.pretrain import SyntheticPretraining


def _config(*extra: str) -> SyntheticPretraining:
    parser = argparse.ArgumentParser()
    add_eval_parser(parser.add_subparsers(dest="command"))
    args = parser.parse_args(
        ["eval", "--manifest", "m.csv", "--tasks", "diagnosis", "--out", "o", *extra]
    )
    cfg = config_from_args(args)
    assert cfg.manifest == Path("m.csv")
    return cfg.synthetic


def test_the_style_reaches_the_pretraining_and_its_provenance() -> None:
    v1 = _config("--init", "synthetic")
    v2 = _config("--init", "synthetic", "--synthetic-style", "v2")
    assert (v1.style, v2.style) == ("v1", "v2")
    assert v1.provenance()["init_synthetic_style"] == 1.0
    assert v2.provenance()["init_synthetic_style"] == 2.0
    assert "style v2" in v2.describe() and "style v1" in v1.describe()
