"""``mcpctl health``: exit 0 when every endpoint is SERVING (grpc.health.v1), else 1.

Usable as a container health check (``mcpctl health --endpoints 127.0.0.1:7101``).
A member is SERVING when it knows a leader and has applied everything committed.
"""

from __future__ import annotations

import argparse
from typing import Any


def register(sub: Any, parent: argparse.ArgumentParser) -> None:
    p = sub.add_parser("health", parents=[parent], help="exit 0 if every endpoint is SERVING")
    p.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    import grpc
    from grpc_health.v1 import health_pb2, health_pb2_grpc

    from mcpctl.cli import connect
    from mcpctl.cli.fields import HEALTH_SERVING
    from mcpctl.cli.output import printer

    states: list[tuple[str, str]] = []
    with connect.client(args) as client:
        for endpoint in client.endpoints:
            # The health service needs no token; TLS settings apply.
            stub = health_pb2_grpc.HealthStub(client._channel(endpoint))
            try:
                resp = stub.Check(
                    health_pb2.HealthCheckRequest(service=""), timeout=min(args.timeout, 3.0)
                )
                state = health_pb2.HealthCheckResponse.ServingStatus.Name(resp.status)
            except grpc.RpcError as e:
                state = f"UNREACHABLE ({e.code().name.lower()})"
            states.append((endpoint, state))
    printer(args.write_out).health(states)
    return 0 if all(state == HEALTH_SERVING for _, state in states) else 1
