"""Errors that both tiers raise, each carrying the gRPC status a caller should see.

    LusError
     ├── InvalidInput          INVALID_ARGUMENT    (bad video bytes, wrong vector length, NaN)
     ├── SchemaMismatch        FAILED_PRECONDITION (vector made with another biomarker schema)
     ├── NotFound              NOT_FOUND           (unknown task or version)
     ├── AlreadyExists         ALREADY_EXISTS      (registering a version twice)
     ├── Overloaded            RESOURCE_EXHAUSTED  (queue full; retry later)
     │    └── QueueFull        RESOURCE_EXHAUSTED  (the batcher's queue; with a retry hint)
     ├── DeadlineExpired       DEADLINE_EXCEEDED   (the deadline passed while queued)
     ├── NotReady              UNAVAILABLE         (model not loaded yet, registry unreachable)
     ├── FailedPrecondition    FAILED_PRECONDITION (state forbids it: delete a promoted version)
     ├── Unauthenticated       UNAUTHENTICATED     (no bearer token, or an unknown one)
     └── PermissionDenied      PERMISSION_DENIED   (a team changing another team's task)

Domain code raises these; one interceptor (``lus.rpc.interceptors``) turns them into statuses.
Messages must tell the caller what to change, e.g. "vector has 12 values; schema X has 38".
"""

from __future__ import annotations

import grpc


class LusError(Exception):
    """Base of every error a caller may see; ``code`` is the gRPC status it maps to."""

    code: grpc.StatusCode = grpc.StatusCode.INTERNAL


class InvalidInput(LusError):
    code = grpc.StatusCode.INVALID_ARGUMENT


class SchemaMismatch(LusError):
    code = grpc.StatusCode.FAILED_PRECONDITION


class NotFound(LusError):
    code = grpc.StatusCode.NOT_FOUND


class AlreadyExists(LusError):
    code = grpc.StatusCode.ALREADY_EXISTS


class Overloaded(LusError):
    code = grpc.StatusCode.RESOURCE_EXHAUSTED


class NotReady(LusError):
    code = grpc.StatusCode.UNAVAILABLE


class FailedPrecondition(LusError):
    """The system is not in a state that allows the call; the message says what to change."""

    code = grpc.StatusCode.FAILED_PRECONDITION


class Unauthenticated(LusError):
    """The call needs credentials (a bearer token) that are missing or not recognised."""

    code = grpc.StatusCode.UNAUTHENTICATED


class PermissionDenied(LusError):
    """The caller is known but may not do this, e.g. change another team's task."""

    code = grpc.StatusCode.PERMISSION_DENIED


class QueueFull(Overloaded):
    """RESOURCE_EXHAUSTED with a retry hint: ``retry-after-ms`` and ``grpc-retry-pushback-ms``
    trailing metadata (the latter is what gRPC's own retry policy honours)."""

    def __init__(self, message: str, retry_after_ms: int) -> None:
        super().__init__(message)
        self.retry_after_ms = retry_after_ms
        self.trailing_metadata = (
            ("retry-after-ms", str(retry_after_ms)),
            ("grpc-retry-pushback-ms", str(retry_after_ms)),
        )


class DeadlineExpired(LusError):
    """The request's deadline passed while it waited; it never reached the model."""

    code = grpc.StatusCode.DEADLINE_EXCEEDED
