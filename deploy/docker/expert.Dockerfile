# CPU tier: task experts (ONNX Runtime). No torch, no video decoders: a slim image.
# Build from the repository root: docker build -f deploy/docker/expert.Dockerfile -t lus-expert .
# BASE_IMAGE: the same image from an internal registry mirror; deploy/docker/standin-base.sh
# builds a local stand-in for hosts that cannot reach Docker Hub.
ARG BASE_IMAGE=python:3.11.14-slim-bookworm
FROM ${BASE_IMAGE}
# EXTRAS=redis,train adds scikit-learn and skl2onnx (no torch) for replicas that run TrainExpert.
ARG EXTRAS=redis

ENV PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1 PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1
WORKDIR /app
COPY pyproject.toml README.md ./
COPY deploy/constraints.txt deploy/constraints.txt
COPY lus lus
COPY biomarker_service biomarker_service
COPY expert_service expert_service
COPY trainer trainer
# Core dependencies only (grpc, onnxruntime, numpy, pydantic, prometheus) plus the Redis client.
RUN pip install -c deploy/constraints.txt ".[${EXTRAS}]" \
    && useradd --uid 10001 --no-create-home --shell /usr/sbin/nologin lus

USER 10001
ENV LUS_EXPERT_HOST=0.0.0.0 LUS_EXPERT_PORT=50052 \
    LUS_EXPERT_METRICS_HOST=0.0.0.0 LUS_EXPERT_METRICS_PORT=9102
EXPOSE 50052 50053 9102
HEALTHCHECK --interval=10s --timeout=3s --start-period=20s --retries=3 \
  CMD ["python", "-m", "lus.healthcheck", "127.0.0.1:50052"]
STOPSIGNAL SIGTERM
ENTRYPOINT ["python", "-m", "expert_service"]
