# Trainer jobs: biomarker-model training (GPU when present), vector extraction, expert fitting.
# Build from the repository root: docker build -f deploy/docker/trainer.Dockerfile -t lus-trainer .
FROM python:3.11.14-slim-bookworm

ENV PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1 PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1
WORKDIR /app
COPY pyproject.toml README.md ./
COPY deploy/constraints.txt deploy/constraints.txt
COPY lus lus
COPY biomarker_service biomarker_service
COPY expert_service expert_service
COPY trainer trainer
RUN pip install -c deploy/constraints.txt '.[all]' \
    && useradd --uid 10001 --create-home --shell /usr/sbin/nologin lus

USER 10001
WORKDIR /work
ENTRYPOINT ["lus"]
CMD ["--help"]
