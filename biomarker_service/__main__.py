"""``python -m biomarker_service``: run the GPU tier with settings from the environment."""

from biomarker_service.server import main

if __name__ == "__main__":
    main()
