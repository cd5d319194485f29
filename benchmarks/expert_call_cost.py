"""Peak Python memory of one matrix prediction by size and contributions: the figures behind
``LUS_EXPERT_MAX_CALL_COST`` (issue 16). Prints one line per case; no assertions.

    .venv/bin/python -m benchmarks.expert_call_cost
"""

from __future__ import annotations

import tempfile
import time
import tracemalloc
from pathlib import Path

import numpy as np

from expert_service.answers import MatrixQuery
from expert_service.costs import call_cost
from expert_service.predictor import ExpertPredictor
from expert_service.registry import LocalRegistry
from tests.integration.expert_service.test_api import MODEL, SCHEMA, N, _draft, _expert

CASES = ((10_000, 0), (5_000, 1), (10_000, 1), (1_000, 5), (1_000, 38))


def main() -> None:
    with tempfile.TemporaryDirectory() as root:
        registry = LocalRegistry(Path(root))
        registry.register(_draft("covid", *_expert(0)), owner="bench")
        predictor = ExpertPredictor(registry)
        rng = np.random.default_rng(0)
        for vectors, contributions in CASES:
            values = (rng.random((vectors, N), dtype=np.float32) * 0.6).reshape(-1)
            query = MatrixQuery(
                "covid", 0, "", SCHEMA.schema_id, vectors, values, contributions, MODEL
            )
            predictor.predict_matrix(query)  # warm: the expert is loaded before measuring
            tracemalloc.start()
            started = time.process_time()
            predictor.predict_matrix(query)
            cpu = time.process_time() - started
            _, peak = tracemalloc.get_traced_memory()
            tracemalloc.stop()
            cost = call_cost(vectors, N, contributions)
            print(
                f"{vectors:>6} vectors x {contributions:>2} contributions: cost {cost:>9}, "
                f"peak {peak / 2**20:7.1f} MiB, CPU {cpu:5.2f} s"
            )


if __name__ == "__main__":
    main()
