"""``python -m lus.healthcheck HOST:PORT [SERVICE]``: exit 0 when the server reports SERVING.

The containers' HEALTHCHECK and the Kubernetes exec probes (gRPC's native probes cannot speak
TLS). Against a TLS port add ``--ca-file`` (and ``--cert-file``/``--key-file`` for mutual TLS);
``--server-name`` checks the certificate against that name when HOST is an address such as
127.0.0.1. Each flag defaults to an environment variable, ``LUS_HEALTHCHECK_CA_FILE``,
``LUS_HEALTHCHECK_CERT_FILE``, ``LUS_HEALTHCHECK_KEY_FILE`` and ``LUS_HEALTHCHECK_SERVER_NAME``,
so an image's fixed HEALTHCHECK command works against a TLS port when the container's
environment names the files.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc

from lus.rpc.client import ClientTls, client_tls, open_channel


def check(
    address: str, service: str = "", timeout_s: float = 3.0, *, tls: ClientTls | None = None
) -> bool:
    """Whether the server at ``address`` reports ``service`` ("" = overall) SERVING."""
    # A probe is no trace: it would otherwise set up a tracer provider on every run.
    with open_channel(address, tls=tls, traced=False) as channel:
        try:
            reply = health_pb2_grpc.HealthStub(channel).Check(
                health_pb2.HealthCheckRequest(service=service), timeout=timeout_s
            )
        except grpc.RpcError:
            return False
    return bool(reply.status == health_pb2.HealthCheckResponse.SERVING)


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m lus.healthcheck", description="exit 0 when the server reports SERVING"
    )
    parser.add_argument("address", metavar="HOST:PORT")
    parser.add_argument("service", nargs="?", default="", help='default: "" (the whole server)')

    def env(name: str) -> str | None:
        return os.environ.get(f"LUS_HEALTHCHECK_{name}") or None

    def env_path(name: str) -> Path | None:
        value = env(name)
        return Path(value) if value is not None else None

    parser.add_argument(
        "--ca-file",
        type=Path,
        default=env_path("CA_FILE"),
        help="CA bundle of a TLS port (default: $LUS_HEALTHCHECK_CA_FILE)",
    )
    parser.add_argument(
        "--cert-file",
        type=Path,
        default=env_path("CERT_FILE"),
        help="client certificate, for mutual TLS (default: $LUS_HEALTHCHECK_CERT_FILE)",
    )
    parser.add_argument(
        "--key-file",
        type=Path,
        default=env_path("KEY_FILE"),
        help="key of --cert-file (default: $LUS_HEALTHCHECK_KEY_FILE)",
    )
    parser.add_argument(
        "--server-name",
        default=env("SERVER_NAME"),
        help="name the server's certificate must carry (default: $LUS_HEALTHCHECK_SERVER_NAME)",
    )
    args = parser.parse_args(argv)
    try:
        tls = client_tls(args.ca_file, args.cert_file, args.key_file, args.server_name)
    except ValueError as err:
        parser.error(str(err))
    return 0 if check(args.address, args.service, tls=tls) else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
