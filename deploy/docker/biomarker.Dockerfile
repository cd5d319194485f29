# GPU tier: biomarker extraction. PyPI's torch 2.13.0 wheels for Linux bundle the CUDA runtime,
# so this image runs on NVIDIA GPUs (with the NVIDIA container toolkit) and falls back to CPU.
# Build from the repository root: docker build -f deploy/docker/biomarker.Dockerfile -t lus-biomarker .
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
# lus/ and biomarker_service/ only: the tier imports neither expert_service nor trainer nor lus_cli
# (the import contract in pyproject.toml), so the `lus` script pip writes is removed.
RUN pip install -c deploy/constraints.txt '.[biomarker,redis]' \
    && rm "$(python -c 'import sysconfig; print(sysconfig.get_path("scripts"))')/lus" \
    && useradd --uid 10001 --no-create-home --shell /usr/sbin/nologin lus \
    && install -d -o 10001 -g 10001 /data

USER 10001
# /models is mounted read-only; the embedded (SQLite) feature store lives in /data when Redis
# is not configured (LUS_BIOMARKER_FEATURE_STORE=redis in compose and Kubernetes).
ENV LUS_BIOMARKER_HOST=0.0.0.0 LUS_BIOMARKER_PORT=50051 LUS_BIOMARKER_ARTIFACT=/models/lus-biomarker.safetensors \
    LUS_BIOMARKER_FEATURE_STORE_PATH=/data/lus-features.sqlite
EXPOSE 50051 9101
# Against a TLS port the check reads LUS_HEALTHCHECK_CA_FILE (and _CERT_FILE, _KEY_FILE for mutual
# TLS, _SERVER_NAME) from the container environment, as deploy/compose.yaml sets them.
HEALTHCHECK --interval=15s --timeout=5s --start-period=120s --retries=3 \
  CMD ["python", "-m", "lus.healthcheck", "127.0.0.1:50051"]
STOPSIGNAL SIGTERM
ENTRYPOINT ["python", "-m", "biomarker_service"]
