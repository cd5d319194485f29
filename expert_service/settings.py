"""Settings of the expert server, read from ``LUS_EXPERT_*`` environment variables."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

from pydantic import Field, SecretStr, model_validator
from pydantic_settings import SettingsConfigDict

from expert_service.artifact_safety import (
    DEFAULT_ALLOWED_DOMAINS,
    DEFAULT_MAX_MODEL_BYTES,
    DEFAULT_MAX_TENSOR_BYTES,
    ArtifactPolicy,
)
from expert_service.auth import DEFAULT_MIN_TOKEN_CHARS, TeamTokens
from expert_service.costs import DEFAULT_MAX_CALL_COST, DEFAULT_MAX_INFLIGHT_COST, CostLimits
from expert_service.limits import DEFAULT_MAX_BATCH_ROWS, RequestLimits
from lus.rpc.server import MiB
from lus.rpc.settings import ServingSettings


class ExpertSettings(ServingSettings):
    """How the expert tier listens, where it finds its experts and who may change them.

    Logging, TLS (every port: public, admin) and the shutdown grace come from
    ``ServingSettings``, as ``LUS_EXPERT_LOG_JSON``, ``LUS_EXPERT_TLS_CERT_FILE``, ... Built
    once in ``main()`` and passed down; nothing reads the environment after that.
    """

    model_config = SettingsConfigDict(
        env_prefix="LUS_EXPERT_", use_attribute_docstrings=True, extra="forbid", frozen=True
    )

    host: str = "127.0.0.1"
    """Interface to bind; "0.0.0.0" listens on every interface. Default 127.0.0.1."""

    port: int = Field(default=50052, ge=0, le=65535)
    """TCP port of the public ExpertService; 0 picks a free (ephemeral) port. Default 50052."""

    admin_port: int = Field(default=50053, ge=0, le=65535)
    """TCP port of ExpertAdminService only (the public port refuses admin calls), so a
    NetworkPolicy can limit who reaches it; 0 picks a free port, and so does leaving it unset
    while ``port`` is 0 (tests, demos). Default 50053."""

    registry_dir: Path = Path("./lus-registry")
    """Folder of the local expert registry (``<task>/<version>/``), used when no
    ``registry_url`` is set. Default ./lus-registry."""

    registry_url: str | None = None
    """Redis URL of a shared registry, e.g. redis://127.0.0.1:6379/0; unset = local folder."""

    registry_prefix: str = "lus:expert:"
    """Prefix of every registry key in Redis, so registries can share one server."""

    registry_timeout_s: float = Field(default=1.0, gt=0.0)
    """Redis connect/read timeout in seconds: how fast calls fail when Redis is gone. 1.0."""

    registry_persistence: Literal["warn", "require", "ignore"] = "warn"
    """What to do when the registry's Redis keeps nothing on disk (neither AOF nor RDB), so a
    restart would lose every expert: "warn" (log a WARNING at start, the default), "require"
    (refuse to start), or "ignore" (tests, throwaway stacks)."""

    # Registry durability and signatures (docs/operations.md "Registry durability").
    registry_durable_dir: Path | None = None
    """Folder of the Redis registry's durable copy (every version, card, training set and task
    record, written before Redis on every write; a PVC in Kubernetes), from which `lus registry
    restore` rebuilds a Redis that lost its data. Unset: no copy (a WARNING at start). Ignored
    by the local folder registry."""

    registry_signing_key_file: Path | None = None
    """File of HMAC-SHA256 keys (one per line, at least 32 characters; the first signs, all
    verify), mounted from a Secret: new versions are signed, stored ones checked on every read.
    Unset: nothing is signed (a WARNING at start)."""

    registry_signatures: Literal["require", "warn"] = "warn"
    """"require": serve only versions signed with a key of ``registry_signing_key_file``
    (the manifests' setting); "warn": also serve unsigned ones (a registry filled before
    signing was on, the embedded demo). A signature that does not verify is refused in both.
    Default warn."""

    resync_interval_s: float = Field(default=1.0, gt=0.0)
    """Seconds between polls of the registry for changes (push notices come sooner). 1.0."""

    max_loaded: int = Field(default=128, ge=1)
    """Expert sessions kept in memory across all tasks (least recently used dropped). 128."""

    admin_tokens: dict[str, SecretStr] = Field(default_factory=dict)
    """Team -> bearer token for admin RPCs, as JSON ({"radiology": "..."}); empty disables
    RegisterExpert/Promote/Rollback/DeleteVersion. Default {}."""

    feature_store: Literal["none", "sqlite", "redis"] = "none"
    """Where Predict finds vectors by video hash: "sqlite", "redis" or "none" (Predict by hash
    then answers INVALID_ARGUMENT). Default none."""

    feature_store_path: Path = Path("./lus-features.sqlite")
    """SQLite feature-store file (the biomarker tier's) when feature_store is "sqlite"."""

    feature_store_url: str = "redis://127.0.0.1:6379/0"
    """Redis server of the feature store when feature_store is "redis". Default local, db 0."""

    feature_store_prefix: str = "lus:fs:"
    """Prefix of every feature-store key in Redis (the biomarker tier's). Default "lus:fs:"."""

    training_workers: int = Field(default=1, ge=0)
    """TrainExpert jobs fitted at once, each in a worker process (started on the first job,
    stopped after 5 idle minutes); 0 switches TrainExpert off here (UNIMPLEMENTED). Only a
    replica started with a fitter fits at all (``python -m trainer.expert_replica``, ``lus
    serve``); ``python -m expert_service`` answers TrainExpert with UNIMPLEMENTED. Default 1."""

    training_queue: int = Field(default=4, ge=0)
    """TrainExpert jobs that may wait behind the running ones; more get RESOURCE_EXHAUSTED.
    Default 4."""

    training_keep_s: float = Field(default=3600.0, gt=0.0)
    """Seconds a finished training job stays readable by GetTrainingJob (at most 256 kept).
    Default 3600."""

    processes: int = Field(default=1, ge=1)
    """Processes serving ExpertService on the one public port (the kernel spreads client
    connections across them with SO_REUSEPORT). A Python process answers on about one core
    (the GIL), so set it to the cores a replica has; the first process alone serves the admin
    port and restarts any other that dies. Default 1."""

    pin_cpus: bool = False
    """Pin each serving process to one of the CPUs it may use (process i to the i-th, round
    robin). A process computes on about one core anyway (the GIL); pinned, its threads hand each
    call to one another without crossing cores, which cut Predict p50 at concurrency 1 by about
    a quarter on 2 cores. Use it where a replica owns its cores (Kubernetes' static CPU manager,
    a dedicated VM). Default false."""

    workers: int = Field(default=4, ge=1)
    """Threads answering ExpertService calls. Each call holds the GIL, so more threads than
    cores add contention rather than speed; a few spare ones keep answering while one waits
    on the registry or feature store. Default 4."""

    max_concurrent_rpcs: int = Field(default=128, ge=1)
    """ExpertService calls running or queued; beyond this a call gets RESOURCE_EXHAUSTED at
    once instead of waiting without bound. Each queued call holds its request (up to
    ``max_message_bytes``), so 128 bounds that at 512 MiB by default. Default 128."""

    metrics_host: str = "127.0.0.1"
    """Interface of the Prometheus ``/metrics`` HTTP port. Default 127.0.0.1."""

    metrics_port: int | None = Field(default=None, ge=0, le=65535)
    """Port of Prometheus ``/metrics`` (0 picks a free one); unset serves no metrics port.
    Worker processes (``processes`` > 1) serve theirs on the next ports up. Deployments set
    9102. Default unset."""

    max_message_bytes: int = Field(default=4 * MiB, gt=0)
    """Largest gRPC message sent or received, in bytes. Default 4 MiB."""

    max_model_bytes: int = Field(default=DEFAULT_MAX_MODEL_BYTES, gt=0)
    """Largest ONNX expert registered or loaded, in bytes; bigger ones are refused with
    INVALID_ARGUMENT. The zoo's largest, random forests, are about 1.3 kB per training vector.
    Default 64 MiB."""

    allowed_operator_domains: tuple[str, ...] = DEFAULT_ALLOWED_DOMAINS
    """Operator domains an ONNX expert may use, as JSON (["", "ai.onnx", "ai.onnx.ml"]);
    a model with a node or opset import of another domain is refused. External data is never
    allowed. Default those three (what skl2onnx emits)."""

    max_batch_rows: int = Field(default=DEFAULT_MAX_BATCH_ROWS, ge=1)
    """Vectors one PredictBatch may hold (requests plus every matrix's n_vectors); more are
    refused with INVALID_ARGUMENT before any is computed. The reply must also fit in
    ``max_message_bytes``, estimated before computing. Default 10000."""

    # Issue 16 (the expert tier's tenancy and cost limits): docs/security.md, "Expert ports".
    admin_tokens_file: Path | None = None
    """JSON file of team -> bearer token, used instead of ``admin_tokens`` and re-read when it
    changes, so tokens rotate without a restart (a bad new file keeps the old tokens and logs
    why). Default unset."""

    admin_token_min_chars: int = Field(default=DEFAULT_MIN_TOKEN_CHARS, ge=1)
    """Shortest admin token accepted; shorter ones, empty team names and a token shared by two
    teams stop the start. Default 10 (use 32+ random characters)."""

    max_call_cost: int = Field(default=DEFAULT_MAX_CALL_COST, ge=1)
    """Largest Predict/PredictBatch, in vectors x features x (1 + contributions asked); more is
    refused with INVALID_ARGUMENT before any work. Default 400000 (10,000 plain 38-d vectors,
    or about 5,000 with one contribution each)."""

    max_inflight_cost: int = Field(default=DEFAULT_MAX_INFLIGHT_COST, ge=1)
    """Cost (as ``max_call_cost``) of all calls computing at once in one process; a call that
    would pass it gets RESOURCE_EXHAUSTED at once. Default 800000."""

    max_calls_per_caller: int = Field(default=8, ge=1)
    """ExpertService calls one caller (client certificate under mutual TLS, else peer address)
    may have being answered at once; more get RESOURCE_EXHAUSTED. At most ``workers`` calls are
    answered at once, so it bites only below ``workers``: set it there to keep one caller from
    taking every thread. Default 8."""

    health_port: int | None = Field(default=None, ge=0, le=65535)
    """Port of a health-only gRPC server with its own thread, for liveness and readiness probes,
    so a busy public pool never fails them (0 picks a free one). Unset: health is answered on
    the public and admin ports only. Deployments set 50054. Default unset."""

    public_unaliased_versions: bool = False
    """Whether the public port answers versions no alias points to (explicit ``version``);
    false answers only production/staging, so callers cannot reach rolled-back versions or
    thrash the model cache. Default false."""

    public_video_hash: bool = False
    """Whether anonymous callers (no client certificate) may Predict by ``video_hash`` on the
    public port, from any stored vector. An answer versus NOT_FOUND then tells them whether a
    study was scanned, so turn it on only where the uploading integration alone reaches the
    port; such answers never carry contributions. Callers with a certificate read their own
    uploads either way. Default false."""

    max_loaded_bytes: int = Field(default=512 * MiB, ge=1)
    """ONNX bytes of the expert sessions kept loaded (with ``max_loaded``); the least recently
    used are dropped first. Default 512 MiB."""

    training_video_hash: bool = False
    """Whether TrainExpert examples naming video hashes may use any stored vector; off, only
    vectors the feature store records as uploaded by the team (``team:<name>``) or by the
    call's client certificate, so no team trains on another's study. Default false."""

    training_max_examples: int = Field(default=20_000, ge=1)
    """Examples one TrainExpert request may hold; more are refused before any lookup. 20000."""

    training_jobs_per_team: int = Field(default=2, ge=1)
    """TrainExpert jobs one team may have queued or running on a replica. Default 2."""

    training_fit_timeout_s: float = Field(default=1800.0, gt=0.0)
    """Seconds a fit may run before its worker process is killed and the job fails. 1800."""

    training_memory_bytes: int = Field(default=2048 * MiB, ge=64 * MiB)
    """Address-space limit (RLIMIT_AS) of each fitting process; a fit beyond it fails, the
    replica stays up. Default 2 GiB."""

    summary_min_patients: int = Field(default=30, ge=1)
    """Patients below which a trained expert's published feature means and spreads are rounded
    to 0.1 (and k-NN is refused), so its card cannot give back single training vectors.
    Default 30."""

    probe_memory_bytes: int = Field(default=1024 * MiB, ge=64 * MiB)
    """Address-space limit of the process that loads and test-runs a new ONNX expert before it
    is registered or served; a model that needs more is refused. Default 1 GiB."""

    probe_timeout_s: float = Field(default=20.0, gt=0.0)
    """Seconds that probe may take. Default 20."""

    max_tensor_bytes: int = Field(default=DEFAULT_MAX_TENSOR_BYTES, ge=1)
    """Largest tensor an ONNX expert may hold (initializer or Constant attribute), and largest
    shape a constant may ask for; bigger is refused. Default 16 MiB."""

    @model_validator(mode="before")
    @classmethod
    def _ephemeral_admin_port(cls, data: Any) -> Any:
        # An ephemeral public port means "pick free ports": a fixed admin port would clash
        # between test servers and demo stacks that never asked for one.
        if isinstance(data, dict) and "admin_port" not in data and str(data.get("port")) == "0":
            return {**data, "admin_port": 0}
        return data

    @model_validator(mode="after")
    def _admin_port_of_its_own(self) -> ExpertSettings:
        if self.port != 0 and self.admin_port == self.port:
            raise ValueError(f"admin_port must differ from port (both {self.port})")
        return self

    @property
    def address(self) -> str:
        """``host:port`` of the public service for binding; IPv6 hosts get brackets."""
        return f"{self._bracketed_host}:{self.port}"

    @property
    def admin_address(self) -> str:
        """``host:admin_port`` of the admin service for binding."""
        return f"{self._bracketed_host}:{self.admin_port}"

    @property
    def _bracketed_host(self) -> str:
        if ":" in self.host and not self.host.startswith("["):
            return f"[{self.host}]"
        return self.host

    def artifact_policy(self) -> ArtifactPolicy:
        """What an ONNX expert may be (``artifact_safety.configure`` takes it)."""
        return ArtifactPolicy(
            self.max_model_bytes, self.allowed_operator_domains, self.max_tensor_bytes
        )

    def request_limits(self) -> RequestLimits:
        """How big a PredictBatch and its reply may be (``ExpertServicer`` takes it)."""
        return RequestLimits(self.max_batch_rows, self.max_message_bytes)

    def team_auth(self) -> TeamTokens:
        """The admin port's ``TeamTokens`` (``ValueError`` when the tokens are unusable)."""
        return TeamTokens(
            self.team_tokens(),
            tokens_file=self.admin_tokens_file,
            min_chars=self.admin_token_min_chars,
        )

    def cost_limits(self) -> CostLimits:
        """What one call, all calls at once and one caller may cost (``ExpertServicer``)."""
        # At most ``workers`` calls are answered at once: a per-caller limit at or above that
        # never bites, and then no call pays for naming its caller.
        per_caller = self.max_calls_per_caller if self.max_calls_per_caller < self.workers else None
        return CostLimits(self.max_call_cost, self.max_inflight_cost, per_caller)

    def team_tokens(self) -> dict[str, str]:
        """``admin_tokens`` with the secrets revealed, for ``auth.TeamTokens``."""
        return {team: token.get_secret_value() for team, token in self.admin_tokens.items()}
