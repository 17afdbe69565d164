"""An identity's rate limit holds for the whole cluster (issue #19): a token that
calls each of three members in turn gets its burst once, not three times."""

from __future__ import annotations

import functools
import hashlib
from pathlib import Path

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc

from mcpctl.client import Client
from mcpctl.errors import ResourceExhausted
from tests.cluster import Cluster, NodeProc, wait_for

pytestmark = pytest.mark.cluster

TOKEN = "metered-token-0123456789abcdef"
BURST = 6
# So low that no token is earned back during the test: the counts are exact.
RATE_PER_S = 0.001


def serving(node: NodeProc) -> bool:
    """grpc.health.v1 (open, so it spends no one's budget): leader known, log applied."""
    with grpc.insecure_channel(node.endpoint) as ch:
        resp = health_pb2_grpc.HealthStub(ch).Check(health_pb2.HealthCheckRequest(), timeout=2)
    return bool(resp.status == health_pb2.HealthCheckResponse.SERVING)


def test_calling_every_member_in_turn_buys_no_extra_budget(tmp_path: Path) -> None:
    auth = {
        "enabled": True,
        "rate_per_s": RATE_PER_S,
        "burst": BURST,
        "tokens": [
            {
                "name": "metered",
                "role": "admin",
                "sha256": hashlib.sha256(TOKEN.encode()).hexdigest(),
            }
        ],
    }
    cluster = Cluster(tmp_path, extra_config={"auth": auth})
    try:
        for node in cluster.nodes:
            cluster.start(node)
        for node in cluster.nodes:
            wait_for(f"{node.name} to serve", functools.partial(_quiet_serving, node))
        admitted = {node.name: 0 for node in cluster.nodes}
        for _ in range(BURST):
            for node in cluster.nodes:
                with Client([node.endpoint], token=TOKEN, timeout=5.0, attempts_max=1) as c:
                    try:
                        c.get("/", prefix=True, count_only=True, serializable=True)
                        admitted[node.name] += 1
                    except ResourceExhausted:
                        pass
        # Each of the 3 voters holds a third of the budget.
        assert admitted == {node.name: BURST // 3 for node in cluster.nodes}
    finally:
        cluster.close()


def _quiet_serving(node: NodeProc) -> bool:
    try:
        return serving(node)
    except grpc.RpcError:
        return False
