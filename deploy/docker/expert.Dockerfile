# CPU tier: task experts (ONNX Runtime). No torch, no video decoders, no trainer: a slim image.
# The image holds lus/ and expert_service/ only: no biomarker_service/, trainer/ or lus_cli/ (so
# no `lus` command), and the build fails if `import expert_service.server` needs any of them.
# Replicas that accept TrainExpert run deploy/docker/expert-train.Dockerfile instead.
# Build from the repository root: docker build -f deploy/docker/expert.Dockerfile -t lus-expert .
# With BuildKit the context is cut down by expert.Dockerfile.dockerignore (beside this file).
# BASE_IMAGE: the same image from an internal registry mirror; deploy/docker/standin-base.sh
# builds a local stand-in for hosts that cannot reach Docker Hub.
ARG BASE_IMAGE=python:3.11.14-slim-bookworm
FROM ${BASE_IMAGE}
# Extras of lus-serving to install: the Redis client by default. `train` belongs in expert-train.
ARG EXTRAS=redis,otel

ENV PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1 PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1
WORKDIR /app
COPY pyproject.toml README.md ./
COPY deploy/constraints.txt deploy/constraints.txt
COPY lus lus
COPY expert_service expert_service
# Core dependencies only (grpc, onnxruntime, numpy, pydantic, prometheus) plus the Redis client.
# Package discovery takes the folders present; the `lus` console script pip writes anyway would
# only fail (lus_cli is not here), so it is removed.
RUN pip install -c deploy/constraints.txt ".[${EXTRAS}]" \
    && rm "$(python -c 'import sysconfig; print(sysconfig.get_path("scripts"))')/lus" \
    && python -c "import expert_service.server" \
    && useradd --uid 10001 --no-create-home --shell /usr/sbin/nologin lus \
    # A named volume copies this folder's owner, so the registry's durable copy is writable.
    && mkdir -p /registry-durable && chown 10001:10001 /registry-durable

USER 10001
ENV LUS_EXPERT_HOST=0.0.0.0 LUS_EXPERT_PORT=50052 \
    LUS_EXPERT_METRICS_HOST=0.0.0.0 LUS_EXPERT_METRICS_PORT=9102 \
    LUS_EXPERT_HEALTH_PORT=50054
EXPOSE 50052 50053 9102
# Against a TLS port the check reads LUS_HEALTHCHECK_CA_FILE (and _CERT_FILE, _KEY_FILE for mutual
# TLS, _SERVER_NAME) from the container environment, as deploy/compose.yaml sets them.
HEALTHCHECK --interval=10s --timeout=3s --start-period=20s --retries=3 \
  CMD ["python", "-m", "lus.healthcheck", "127.0.0.1:50054"]
STOPSIGNAL SIGTERM
ENTRYPOINT ["python", "-m", "expert_service"]
