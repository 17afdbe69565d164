"""Health, reflection and metrics on a real cluster: what probes, grpcurl-style
tools and Prometheus see."""

from __future__ import annotations

import json
import subprocess
import sys
import urllib.request

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc

from tests.cluster import Cluster, NodeProc, wait_for

pytestmark = pytest.mark.cluster


def health_cli(*endpoints: str, fmt: str = "simple") -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "mcpctl", "--endpoints", ",".join(endpoints), "-w", fmt, "health"],
        capture_output=True,
        text=True,
        timeout=30,
    )


def serving(node: NodeProc) -> str:
    with grpc.insecure_channel(node.endpoint) as ch:
        resp = health_pb2_grpc.HealthStub(ch).Check(health_pb2.HealthCheckRequest(), timeout=2)
    name: str = health_pb2.HealthCheckResponse.ServingStatus.Name(resp.status)
    return name


def scrape(node: NodeProc) -> str:
    url = f"http://127.0.0.1:{node.metrics_port}/metrics"
    with urllib.request.urlopen(url, timeout=5) as resp:
        text: str = resp.read().decode()
    return text


def sample(text: str, name: str) -> float:
    """The value of one sample line `name value` (name includes labels)."""
    for line in text.splitlines():
        if line.startswith(name + " "):
            return float(line.rsplit(" ", 1)[1])
    raise AssertionError(f"{name} not in metrics")


def test_health_serving_on_a_healthy_cluster_and_cli_exit_codes(cluster: Cluster) -> None:
    """grpc.health.v1 says SERVING on every member of a healthy cluster and
    `mcpctl health` exits 0; an unreachable endpoint makes it exit 1."""
    for node in cluster.nodes:

        def is_serving(node: NodeProc = node) -> bool:
            return serving(node) == "SERVING"

        wait_for(f"{node.name} SERVING", is_serving)
    ok = health_cli(*cluster.endpoints)
    assert ok.returncode == 0, ok.stdout + ok.stderr
    assert ok.stdout.count("SERVING") == 3
    victim = cluster.nodes[2]
    cluster.kill(victim)
    bad = health_cli(*cluster.endpoints)
    assert bad.returncode == 1
    assert f"{victim.endpoint} UNREACHABLE" in bad.stdout
    as_json = health_cli(*cluster.endpoints, fmt="json")
    assert as_json.returncode == 1
    report = json.loads(as_json.stdout)
    assert report["healthy"] is False
    states = {e["endpoint"]: e["health"] for e in report["endpoints"]}
    assert states[victim.endpoint].startswith("UNREACHABLE")
    assert [states[n.endpoint] for n in cluster.nodes[:2]] == ["SERVING", "SERVING"]


def test_health_not_serving_without_a_leader(cluster: Cluster) -> None:
    """A member left alone (the other two killed) loses its leader and says
    NOT_SERVING, so a probe takes it out of rotation."""
    survivor = cluster.nodes[0]
    wait_for("SERVING before the faults", lambda: serving(survivor) == "SERVING")
    for node in cluster.nodes[1:]:
        cluster.kill(node)
    wait_for("NOT_SERVING", lambda: serving(survivor) == "NOT_SERVING", timeout_s=20)
    assert health_cli(survivor.endpoint).returncode == 1


def test_reflection_lists_the_services(cluster: Cluster) -> None:
    """Server reflection names every service, so grpcurl-style tools work."""
    with grpc.insecure_channel(cluster.nodes[0].endpoint) as ch:
        stub = reflection_pb2_grpc.ServerReflectionStub(ch)
        request = reflection_pb2.ServerReflectionRequest(list_services="")
        answers = list(stub.ServerReflectionInfo(iter([request]), timeout=5))
    names = {s.name for s in answers[0].list_services_response.service}
    assert {"mcp.v1.KV", "mcp.v1.Watch", "mcp.v1.Cluster", "grpc.health.v1.Health"} <= names


def test_metrics_report_raft_state_lag_and_rpc_latency(cluster: Cluster) -> None:
    """/metrics on each member: term, role, indexes; on the leader lag per peer;
    RPC latency histograms by method and code count the requests made."""
    leader = cluster.leader()
    with cluster.client(leader) as c:
        for i in range(5):
            c.put(f"/m/{i}", "x")
        revision = c.get("/m/", prefix=True).header.revision
    text = scrape(leader)
    assert sample(text, 'mcp_raft_role{role="leader"}') == 1.0
    assert sample(text, "mcp_raft_term") >= 1
    assert sample(text, "mcp_store_revision") >= revision
    assert sample(text, 'mcp_rpc_duration_seconds_count{code="OK",method="Put"}') >= 5
    followers = [n for n in cluster.nodes if n is not leader]
    for f in followers:
        assert f'mcp_peer_lag_seconds{{peer="{f.name}"}}' in text
        assert f'mcp_peer_entries_behind{{peer="{f.name}"}}' in text
    assert sample(text, "mcp_proposals_committed_total") >= 5
    follower_text = scrape(followers[0])
    assert sample(follower_text, 'mcp_raft_role{role="follower"}') == 1.0
    assert "mcp_peer_lag_seconds{" not in follower_text  # only the leader knows
    assert sample(follower_text, "mcp_watch_streams") == 0
