"""``python -m trainer.expert_replica``: an expert-tier replica that also fits experts.

The same server as ``python -m expert_service``, with the same ``LUS_EXPERT_*`` settings, but
composed with the trainer's fit function, so it answers TrainExpert (a replica without it
answers UNIMPLEMENTED). Fitting needs the ``train`` extra (scikit-learn, skl2onnx); it runs in
a worker process, so the serving process itself imports no scikit-learn.
"""

from __future__ import annotations

from expert_service.server import main as serve_expert_tier
from trainer.expert_fitting import fit_in_worker


def main() -> None:
    """Entry point: ``expert_service.server.main`` with ``fit_in_worker`` injected."""
    serve_expert_tier(fit=fit_in_worker)


if __name__ == "__main__":
    main()
