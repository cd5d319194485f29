"""``lus demo``: the whole system on one machine in a few minutes, on synthetic data.

synthetic cine loops -> train a small TSM ResNet-18 -> vectors -> fit and register an expert
-> serve both tiers on ephemeral ports -> analyze held-out videos over gRPC.

The experts' lineage is the version ``lus extract`` wrote into the vectors CSV; the biomarker
server serves the same artifact with PyTorch fp32 (no version suffix), so its vectors name that
same version and the experts answer them.
"""

from __future__ import annotations

import csv
import time
from pathlib import Path

from lus.errors import AlreadyExists
from lus.provenance import SYNTHETIC_DATA_NOTICE
from lus_cli.analyze import analyze, format_analysis
from lus_cli.commands import live_line
from lus_cli.serve_local import LocalStack, running_stack

DEMO_TASKS = ("severity", "disease")
LABEL_DEFINITIONS = {
    "severity": "0-3: the lung severity score the synthetic loop was rendered for (0 = normal)",
    "disease": "the diagnosis the synthetic loop was rendered for",
}
"""What each demo task's labels mean, recorded in its experts' lineage."""


def _read_rows(manifest: Path) -> list[dict[str, str]]:
    with manifest.open(newline="") as handle:
        return list(csv.DictReader(handle))


def _step(number: int, text: str) -> None:
    print(f"\n[{number}/5] {text}", flush=True)


def run_demo(workdir: Path, *, n_videos: int = 500, epochs: int = 20) -> None:
    from expert_service.registry import LocalRegistry
    from lus.schema import load_schema
    from lus.synthetic import generate_dataset
    from trainer.biomarker_training import BiomarkerTrainingConfig, train_biomarker_model
    from trainer.experts import train_expert_from_csv
    from trainer.vectors import extract_vectors

    started = time.monotonic()
    print(SYNTHETIC_DATA_NOTICE)
    _step(1, f"generating {n_videos} synthetic cine loops (+ 6 held out for analysis)")
    train_manifest = generate_dataset(
        workdir / "train", n_videos=n_videos, seed=0, height=96, width=96
    )
    sample_manifest = generate_dataset(
        workdir / "samples", n_videos=6, seed=12345, height=96, width=96, progress=False
    )

    _step(2, f"training a reduced TSM ResNet-18 for {epochs} epochs on CPU")
    artifact = workdir / "lus-biomarker.safetensors"
    result = train_biomarker_model(
        BiomarkerTrainingConfig(
            manifest=train_manifest,
            out=artifact,
            frames=8,
            size=80,
            clips=4,
            width=16,
            epochs=epochs,
            batch_size=16,
            lr=1e-3,
            seed=0,
        )
    )
    print(f"model {result.info.version}: {result.info.provenance.metrics}")

    _step(3, "extracting biomarker vectors and fitting experts: " + ", ".join(DEMO_TASKS))
    vectors = extract_vectors(artifact, train_manifest, workdir / "vectors.csv")
    registry_dir = workdir / "registry"
    registry = LocalRegistry(registry_dir)
    for task in DEMO_TASKS:  # a re-run registers a new version; versions are immutable
        try:
            card = train_expert_from_csv(
                vectors,
                task=task,
                registry=registry,
                schema=load_schema(),
                label_column=task,
                label_definition=LABEL_DEFINITIONS[task],
                owner="demo",
                description=f"synthetic-data {task} expert (demo)",
            )
        except AlreadyExists as err:  # a deterministic re-run fits byte-identical experts
            print(f"{task}: {err}")
            continue
        models = ", ".join(card.lineage.biomarker_models) if card.lineage else "none"
        print(f"registered {card.task} v{card.version} (biomarker model {models}): {card.metrics}")
        print(live_line(card, registry.task_state(card.task), registry_dir))

    _step(4, "serving both tiers on localhost (embedded registry, CPU)")
    samples = sorted((workdir / "samples" / "videos").iterdir())[:2]
    with running_stack(
        LocalStack(artifact, registry_dir, biomarker_port=0, expert_port=0, expert_admin_port=0)
    ) as ports:
        print(
            f"biomarker service on 127.0.0.1:{ports['biomarker']}, "
            f"expert service on 127.0.0.1:{ports['expert']}"
        )
        _step(5, "lus analyze on held-out synthetic videos, over gRPC")
        truth = {row["video"]: row for row in _read_rows(sample_manifest)}
        for video in samples:
            report = analyze(
                video, f"127.0.0.1:{ports['biomarker']}", f"127.0.0.1:{ports['expert']}"
            )
            print("\n" + format_analysis(video, report))
            row = truth[f"videos/{video.name}"]
            print("Ground truth (synthetic): " + ", ".join(f"{t}={row[t]}" for t in DEMO_TASKS))
    print(f"demo finished in {time.monotonic() - started:.0f} s; outputs in {workdir}")
