# Trainer jobs: biomarker-model training (GPU when present), vector extraction, expert fitting.
# The `lus` command (lus_cli/) with every package and every extra.
# Build from the repository root: docker build -f deploy/docker/trainer.Dockerfile -t lus-trainer .
# BASE_IMAGE: the same image from an internal registry mirror; deploy/docker/standin-base.sh
# builds a local stand-in for hosts that cannot reach Docker Hub.
ARG BASE_IMAGE=python:3.11.14-slim-bookworm
FROM ${BASE_IMAGE}

ENV PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1 PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1
WORKDIR /app
COPY pyproject.toml README.md ./
COPY deploy/constraints.txt deploy/constraints.txt
COPY lus lus
COPY biomarker_service biomarker_service
COPY expert_service expert_service
COPY trainer trainer
COPY lus_cli lus_cli
# /work: the jobs' working folder (a volume in compose), writable by the non-root user.
RUN pip install -c deploy/constraints.txt '.[all]' \
    && useradd --uid 10001 --create-home --shell /usr/sbin/nologin lus \
    && install -d -o 10001 -g 10001 /work

USER 10001
WORKDIR /work
ENTRYPOINT ["lus"]
CMD ["--help"]
