"""``python -m lus.healthcheck HOST:PORT [SERVICE]``: exit 0 when the server reports SERVING.

The containers' HEALTHCHECK; Kubernetes uses its native gRPC probes instead.
"""

from __future__ import annotations

import sys

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc


def check(address: str, service: str = "", timeout_s: float = 3.0) -> bool:
    with grpc.insecure_channel(address) as channel:
        try:
            reply = health_pb2_grpc.HealthStub(channel).Check(
                health_pb2.HealthCheckRequest(service=service), timeout=timeout_s
            )
        except grpc.RpcError:
            return False
    return bool(reply.status == health_pb2.HealthCheckResponse.SERVING)


def main(argv: list[str]) -> int:
    if not 1 <= len(argv) <= 2:
        print(__doc__, file=sys.stderr)
        return 2
    address, service = argv[0], (argv[1] if len(argv) == 2 else "")
    return 0 if check(address, service) else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
