"""``lus experts refit`` against a real biomarker server serving the current model A and the next
model B (``LUS_BIOMARKER_NEXT_ARTIFACT``), with real MP4 files: B's vectors come from its feature
store where B already analysed the video, else the file is re-extracted by B.

A and B are untrained artifacts with the same weights under two versions, so B's vectors equal
A's and the refit must match production's held-out figures exactly: the gate runs at tolerance
0 and passes only if both sides were measured on the same patients.
"""

from __future__ import annotations

import csv
import hashlib
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import pytest

av = pytest.importorskip("av")

from biomarker_service.server import RunningServer, create_server  # noqa: E402
from biomarker_service.settings import BiomarkerSettings  # noqa: E402
from expert_service.lineage import training_lineage  # noqa: E402
from expert_service.registry import STAGING, LocalRegistry  # noqa: E402
from expert_service.training_set import FitSettings, StoredTrainingSet  # noqa: E402
from lus.clients.biomarker import BiomarkerClient  # noqa: E402
from lus_cli.cli import main  # noqa: E402
from tests.fakes import SMALL_SPEC, encode_mp4, untrained_artifact  # noqa: E402
from tests.servers import in_background_loop  # noqa: E402
from trainer.experts import fit_expert  # noqa: E402

A, B = "refit-real-a", "refit-real-b"
WAIT_S = 60.0
N_PATIENTS, PER_PATIENT = 8, 2


@contextmanager
def _serving(settings: BiomarkerSettings) -> Iterator[RunningServer]:
    """A real biomarker server on its own event loop thread, for the blocking client."""
    with in_background_loop(lambda: create_server(settings)) as (server, _):
        yield server


def test_refit_through_a_two_model_biomarker_server(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    a = untrained_artifact(tmp_path / "a.safetensors", spec=SMALL_SPEC, version=A, width=4)
    b = untrained_artifact(tmp_path / "b.safetensors", spec=SMALL_SPEC, version=B, width=4)
    data = tmp_path / "data"
    (data / "videos").mkdir(parents=True)
    names = [f"videos/v{i:02d}.mp4" for i in range(N_PATIENTS * PER_PATIENT)]
    files = [encode_mp4(seed=100 + i) for i in range(len(names))]
    patients = tuple(f"p{i // PER_PATIENT}" for i in range(len(names)))
    labels = tuple("covid" if (i // PER_PATIENT) % 2 else "healthy" for i in range(len(names)))
    settings = BiomarkerSettings(
        artifact=a,
        next_artifact=b,
        port=0,
        feature_store="sqlite",
        feature_store_path=tmp_path / "features.sqlite",
        max_wait_ms=0,
    )
    with _serving(settings) as server:
        address = f"127.0.0.1:{server.port}"
        with BiomarkerClient(address, timeout_s=WAIT_S) as client:
            replies = [client.extract_bytes(f, model_version=A) for f in files]
            # B has already analysed the first half (traffic during the upgrade).
            for f in files[: len(files) // 2]:
                client.extract_bytes(f, model_version=B)
        vectors = np.asarray([r.vector.values for r in replies], dtype=np.float32)
        assert {r.vector.model.version for r in replies} == {A}

        registry = LocalRegistry(tmp_path / "reg")
        fitted = fit_expert(vectors, labels, family="logreg", patient_ids=patients)
        kept = StoredTrainingSet(
            vectors=vectors,
            labels=labels,
            patients=patients,
            fit=FitSettings("logreg"),
            pixel_hashes=tuple(r.pixel_hash for r in replies),  # as TrainExpert keeps them
        )
        lineage = training_lineage(vectors, labels, patients, biomarker_models=[A])
        schema_id = replies[0].vector.schema_id
        draft = fitted.draft("covid", schema_id=schema_id, lineage=lineage, training_set=kept)
        registry.register(draft, owner="local")

        manifest = data / "manifest.csv"
        with manifest.open("w", newline="") as handle:
            writer = csv.writer(handle)
            writer.writerow(["video", "patient_id"])
            for name, f, patient in zip(names, files, patients, strict=True):
                (data / name).write_bytes(f)
                writer.writerow([name, patient])
        # Known by pixel hash alone, the files are found by decoding them here.
        args = ["experts", "refit", "--task", "covid", "--to-model", B, "--biomarker", address]
        args += ["--videos", str(manifest), "--tolerance", "0", "--no-progress"]
        assert main([*args, "--registry", str(tmp_path / "reg")]) == 0

    half = len(files) // 2
    assert f"({half} feature store, {half} re-extracted)" in capsys.readouterr().out
    card = registry.card("covid", registry.task_state("covid").aliases[STAGING])
    assert card.lineage is not None and card.lineage.biomarker_models == (B,)
    assert card.metrics == fitted.metrics  # same vectors, same patients: the same figures
    stored = registry.training_set("covid", card.version)
    np.testing.assert_array_equal(stored.vectors, vectors)
    assert (
        stored.content_sha256
        == ("",) * half
        + tuple(  # learnt from the files read
            hashlib.sha256(f).hexdigest() for f in files[half:]
        )
    )
