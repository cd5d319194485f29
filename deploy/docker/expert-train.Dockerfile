# CPU tier for replicas that accept TrainExpert: the lean expert image plus trainer/ and the
# `train` extra (scikit-learn, skl2onnx; no torch), started as `python -m trainer.expert_replica`
# (the expert server with the trainer's fitter injected). No biomarker_service/ and no lus_cli/.
# Build from the repository root:
#   docker build -f deploy/docker/expert-train.Dockerfile -t lus-expert-train .
# With BuildKit the context is cut down by expert-train.Dockerfile.dockerignore (beside this file).
# BASE_IMAGE: as in expert.Dockerfile.
ARG BASE_IMAGE=python:3.11.14-slim-bookworm
FROM ${BASE_IMAGE}
ARG EXTRAS=redis,train

ENV PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1 PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1
WORKDIR /app
COPY pyproject.toml README.md ./
COPY deploy/constraints.txt deploy/constraints.txt
COPY lus lus
COPY expert_service expert_service
COPY trainer trainer
RUN pip install -c deploy/constraints.txt ".[${EXTRAS}]" \
    && rm "$(python -c 'import sysconfig; print(sysconfig.get_path("scripts"))')/lus" \
    && python -c "import trainer.expert_replica" \
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
ENTRYPOINT ["python", "-m", "trainer.expert_replica"]
