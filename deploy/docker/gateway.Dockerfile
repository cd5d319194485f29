# DICOM gateway: receives ultrasound cines from a PACS (C-STORE), has both tiers analyse them over
# gRPC and sends each result back as a DICOM Structured Report. No model, no torch, no video
# decoders: lus/ and dicom_gateway/ with pydicom, highdicom and pynetdicom; the build fails if
# `import dicom_gateway.server` needs anything else.
# Build from the repository root: docker build -f deploy/docker/gateway.Dockerfile -t lus-gateway .
# With BuildKit the context is cut down by gateway.Dockerfile.dockerignore (beside this file).
ARG BASE_IMAGE=python:3.11.14-slim-bookworm
FROM ${BASE_IMAGE}
# Extras of lus-serving: the gateway (pynetdicom + the SR builder) and Redis (the cluster outbox).
ARG EXTRAS=gateway,redis

ENV PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1 PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1
WORKDIR /app
COPY pyproject.toml README.md ./
COPY deploy/constraints.txt deploy/constraints.txt
COPY lus lus
COPY dicom_gateway dicom_gateway
RUN pip install -c deploy/constraints.txt ".[${EXTRAS}]" \
    && rm "$(python -c 'import sysconfig; print(sysconfig.get_path("scripts"))')/lus" \
    && python -c "import dicom_gateway.server, dicom_gateway.redis_outbox" \
    && useradd --uid 10001 --no-create-home --shell /usr/sbin/nologin lus \
    && mkdir -p /var/lib/lus-gateway && chown 10001 /var/lib/lus-gateway

USER 10001
# The outbox lives on a volume: what was accepted and not yet acknowledged survives a restart.
ENV LUS_GATEWAY_HOST=0.0.0.0 LUS_GATEWAY_PORT=11112 LUS_GATEWAY_HEALTH_HOST=0.0.0.0 \
    LUS_GATEWAY_HEALTH_PORT=50054 LUS_GATEWAY_METRICS_HOST=0.0.0.0 LUS_GATEWAY_METRICS_PORT=9103 \
    LUS_GATEWAY_OUTBOX_PATH=/var/lib/lus-gateway/outbox.sqlite
VOLUME /var/lib/lus-gateway
EXPOSE 11112 50054 9103
HEALTHCHECK --interval=10s --timeout=3s --start-period=20s --retries=3 \
  CMD ["python", "-m", "lus.healthcheck", "127.0.0.1:50054", "lus.dicom_gateway"]
STOPSIGNAL SIGTERM
ENTRYPOINT ["python", "-m", "dicom_gateway"]
