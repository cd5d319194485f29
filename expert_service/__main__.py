"""``python -m expert_service`` starts the expert server with settings from ``LUS_EXPERT_*``.

It answers TrainExpert with UNIMPLEMENTED: ``python -m trainer.expert_replica`` starts the same
server with the trainer's fitter.
"""

from expert_service.server import main

if __name__ == "__main__":
    main()
