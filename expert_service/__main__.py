"""``python -m expert_service`` starts the expert server with settings from ``LUS_EXPERT_*``."""

from expert_service.server import main

if __name__ == "__main__":
    main()
