"""The gRPC layer's own cost per call: a bare health check on grpc.aio vs the threaded server.

Why the expert tier's public port uses the threaded server: for a prediction of ~100 µs, the
Python gRPC layer is most of the cost. Each server runs in its own process serving only the
standard health service; this process drives ``Check`` at concurrency 1 (blocking stub) and 16
(asyncio stub) and prints p50, calls/s and the server's CPU per call. A third server,
``lus-threaded``, is the expert tier's own (``lus.rpc.threaded_server``: request ids and error
mapping on every call), so the last lines show what those cost over the bare threaded server.

    python benchmarks/grpc_floor.py [--seconds 3] [--workers 4]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import subprocess
import sys
import time
from concurrent import futures
from pathlib import Path

import grpc
import numpy as np
from grpc_health.v1 import health, health_pb2, health_pb2_grpc

REQUEST = health_pb2.HealthCheckRequest()
KINDS = ("aio", "threaded", "lus-threaded")


def cpu_s(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def serve(kind: str, workers: int) -> None:
    """Server process: print the port, then serve health checks until killed."""
    if kind == "lus-threaded":
        from lus.rpc.threaded_server import create_threaded_server, set_serving_threaded

        server, health_servicer = create_threaded_server(max_message_bytes=4 << 20, workers=workers)
        set_serving_threaded(health_servicer, [], serving=True)
        print(server.add_insecure_port("127.0.0.1:0"), flush=True)
        server.start()
        server.wait_for_termination()
        return
    if kind == "threaded":
        server = grpc.server(futures.ThreadPoolExecutor(max_workers=workers))
        health_pb2_grpc.add_HealthServicer_to_server(health.HealthServicer(), server)
        print(server.add_insecure_port("127.0.0.1:0"), flush=True)
        server.start()
        server.wait_for_termination()
        return

    async def main() -> None:
        server = grpc.aio.server()
        health_pb2_grpc.add_HealthServicer_to_server(health.aio.HealthServicer(), server)
        print(server.add_insecure_port("127.0.0.1:0"), flush=True)
        await server.start()
        await server.wait_for_termination()

    asyncio.run(main())


def report(name: str, latencies: list[float], wall: float, server_s: float) -> None:
    p50 = np.percentile(latencies, 50) * 1000
    print(f"{name:<34} p50 {p50:6.3f} ms  {len(latencies) / wall:7.0f} calls/s"
          f"  server CPU {server_s / len(latencies) * 1e6:5.0f} us/call")  # fmt: skip


def blocking_c1(port: int, pid: int, seconds: float) -> tuple[list[float], float, float]:
    with grpc.insecure_channel(f"127.0.0.1:{port}") as channel:
        check = health_pb2_grpc.HealthStub(channel).Check
        for _ in range(200):
            check(REQUEST)
        latencies, before, began = [], cpu_s(pid), time.perf_counter()
        while time.perf_counter() - began < seconds:
            start = time.perf_counter()
            check(REQUEST)
            latencies.append(time.perf_counter() - start)
        return latencies, time.perf_counter() - began, cpu_s(pid) - before


async def asyncio_c16(port: int, pid: int, seconds: float) -> tuple[list[float], float, float]:
    async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as channel:
        check = health_pb2_grpc.HealthStub(channel).Check
        for _ in range(200):
            await check(REQUEST)
        latencies: list[float] = []
        before, began = cpu_s(pid), time.perf_counter()

        async def worker() -> None:
            while time.perf_counter() - began < seconds:
                start = time.perf_counter()
                await check(REQUEST)
                latencies.append(time.perf_counter() - start)

        await asyncio.gather(*(worker() for _ in range(16)))
        return latencies, time.perf_counter() - began, cpu_s(pid) - before


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=float, default=3.0)
    parser.add_argument("--workers", type=int, default=4, help="threads of the threaded server")
    parser.add_argument("--serve", choices=KINDS, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve:
        serve(args.serve, args.workers)
        return
    print(f"machine: {os.cpu_count()} CPUs; grpcio {grpc.__version__}; "
          f"{time.strftime('%Y-%m-%d %H:%M')}")  # fmt: skip
    for kind in KINDS:
        command = [sys.executable, __file__, "--serve", kind, "--workers", str(args.workers)]
        server = subprocess.Popen(command, stdout=subprocess.PIPE, text=True)
        try:
            assert server.stdout is not None
            port = int(server.stdout.readline())
            report(f"{kind} c=1 (blocking stub)", *blocking_c1(port, server.pid, args.seconds))
            report(
                f"{kind} c=16 (asyncio stub)",
                *asyncio.run(asyncio_c16(port, server.pid, args.seconds)),
            )
        finally:
            server.kill()
            server.wait()


if __name__ == "__main__":
    main()
