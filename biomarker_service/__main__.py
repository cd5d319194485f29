"""``python -m biomarker_service``: run the GPU tier with settings from the environment."""

from biomarker_service.settings import main

main()
