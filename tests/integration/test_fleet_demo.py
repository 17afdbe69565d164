"""The live fleet end to end with real processes (issue #15, docs/fleet.md): a
3-node cluster, three `mcpctl.demo.instance` processes (weights 1, 2, 3) and a
`mcpctl.demo.router`, driven over HTTP like a user would.

- 3,000 requests through the router spread by weight (each share within
  SHARE_TOLERANCE of weight/6);
- kill -9 of one instance: gone from `mcpctl instances` within TTL + grace, no
  request started after the router dropped it reaches it, and the router's one
  retry on another instance hides the refused connections meanwhile;
- drain of another: no request started after the router saw the drain reaches it;
- kill -9 of the cluster leader meanwhile: no instance drops out (past TTL +
  grace) and the router keeps answering.
"""

from __future__ import annotations

import http.client
import json
import os
import subprocess
import sys
import threading
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from mcpctl.server.lessor import lease_grace_s
from tests.cluster import Cluster, free_ports, running_cluster, wait_for

pytestmark = pytest.mark.cluster

GRACE_S = lease_grace_s(2.0, 1.0)
TTL_S = 3
ROOT = Path(__file__).resolve().parents[2]
REQUESTS = 3000
# 3,000 draws: the standard deviation of a share is <= 0.009; 0.05 is > 5 sigma.
SHARE_TOLERANCE = 0.05
# Requests in flight when an instance is killed may fail (502): at most one per
# client thread.
CLIENT_THREADS = 2


def _env(cluster: Cluster) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("MCPCTL_", "MCP_"))}
    return {**env, "MCPCTL_ENDPOINTS": ",".join(cluster.endpoints)}


@dataclass
class Fleet:
    cluster: Cluster
    router_port: int
    instances: dict[str, subprocess.Popen[bytes]] = field(default_factory=dict)
    router: subprocess.Popen[bytes] | None = None

    def get(self, path: str) -> Any:
        conn = http.client.HTTPConnection("127.0.0.1", self.router_port, timeout=10)
        try:
            conn.request("GET", path)
            return json.loads(conn.getresponse().read())
        finally:
            conn.close()

    def seen(self) -> dict[str, dict[str, Any]]:
        """What the router's picker sees now, by instance id."""
        return {i["id"]: i for i in self.get("/fleet")["instances"]}

    def listed(self) -> set[str]:
        out = subprocess.run(
            [sys.executable, "-m", "mcpctl", "-w", "json", "instances", "m"],
            capture_output=True, text=True, timeout=60, env=_env(self.cluster),
        )  # fmt: skip
        assert out.returncode == 0, out.stderr
        return {row["id"] for row in json.loads(out.stdout)["instances"]}


@pytest.fixture
def fleet(tmp_path: Path) -> Iterator[Fleet]:
    (tmp_path / "cluster").mkdir()
    with running_cluster(tmp_path / "cluster") as cluster:
        ports = free_ports(4)
        f = Fleet(cluster, ports[3])
        logs = []
        try:
            for n, port in enumerate(ports[:3], start=1):
                log = (tmp_path / f"w{n}.log").open("w")
                logs.append(log)
                f.instances[f"w{n}"] = subprocess.Popen(
                    [sys.executable, "-m", "mcpctl.demo.instance", "--model", "m",
                     "--port", str(port), "--id", f"w{n}", "--weight", str(n),
                     "--ttl", str(TTL_S)],
                    stdout=log, stderr=subprocess.STDOUT, env=_env(cluster), cwd=ROOT,
                )  # fmt: skip
            log = (tmp_path / "router.log").open("w")
            logs.append(log)
            f.router = subprocess.Popen(
                [sys.executable, "-m", "mcpctl.demo.router", "--model", "m",
                 "--port", str(f.router_port)],
                stdout=log, stderr=subprocess.STDOUT, env=_env(cluster), cwd=ROOT,
            )  # fmt: skip
            wait_for("three instances in the router", lambda: len(f.seen()) == 3, timeout_s=90)
            yield f
        finally:
            for proc in [*f.instances.values(), *([f.router] if f.router else [])]:
                proc.kill()
                proc.wait()
            for log in logs:
                log.close()


@dataclass
class Load:
    """Requests through the router from CLIENT_THREADS threads: (start, end,
    status, instance) per request."""

    port: int
    results: list[tuple[float, float, int, str]] = field(default_factory=list)
    stop: threading.Event = field(default_factory=threading.Event)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def one(self, conn: http.client.HTTPConnection) -> tuple[float, float, int, str]:
        started = time.monotonic()
        conn.request("POST", "/v1/completions", json.dumps({"prompt": "hi"}))
        resp = conn.getresponse()
        body = json.loads(resp.read())
        return started, time.monotonic(), resp.status, str(body.get("instance", ""))

    def run(self, count: int | None) -> None:
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=30)
        done = 0
        while not self.stop.is_set() and (count is None or done < count):
            try:
                result = self.one(conn)
            except (OSError, http.client.HTTPException):  # the router closed it: a failure
                result = (time.monotonic(), time.monotonic(), 0, "")
                conn.close()
                conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=30)
            with self.lock:
                self.results.append(result)
            done += 1
        conn.close()

    def start(self) -> list[threading.Thread]:
        threads = [threading.Thread(target=self.run, args=(None,)) for _ in range(CLIENT_THREADS)]
        for t in threads:
            t.start()
        return threads

    def finish(self, threads: list[threading.Thread]) -> list[tuple[float, float, int, str]]:
        self.stop.set()
        for t in threads:
            t.join(60)
        with self.lock:
            return list(self.results)


def test_the_fleet_end_to_end(fleet: Fleet) -> None:
    # 1. 3,000 requests spread by weight.
    spread = Load(fleet.router_port)
    threads = [
        threading.Thread(target=spread.run, args=(REQUESTS // CLIENT_THREADS,))
        for _ in range(CLIENT_THREADS)
    ]
    for t in threads:
        t.start()
    for t in threads:
        t.join(300)
    assert len(spread.results) == REQUESTS
    assert {r[2] for r in spread.results} == {200}
    counts = Counter(r[3] for r in spread.results)
    for n in (1, 2, 3):
        share = counts[f"w{n}"] / REQUESTS
        assert abs(share - n / 6) < SHARE_TOLERANCE, counts

    # 2. kill -9 of w3 under load: gone within TTL + grace; none routed to it after.
    load = Load(fleet.router_port)
    threads = load.start()
    wait_for("requests flowing", lambda: len(load.results) > 50)
    fleet.instances["w3"].kill()
    killed_at = time.monotonic()
    gone = TTL_S + GRACE_S
    wait_for("w3 to leave the router", lambda: "w3" not in fleet.seen(), timeout_s=gone + 10)
    dropped_at = time.monotonic()
    assert dropped_at - killed_at <= gone
    assert "w3" not in fleet.listed()

    # 3. drain w2: none routed to it once the router saw the drain.
    subprocess.run(
        [sys.executable, "-m", "mcpctl", "drain", "m", "w2"],
        check=True, capture_output=True, timeout=60, env=_env(fleet.cluster),
    )  # fmt: skip
    wait_for("the router to see the drain", lambda: fleet.seen()["w2"]["draining"])
    drained_at = time.monotonic()

    # 4. kill -9 of the cluster leader meanwhile: nobody drops out, the router serves.
    leader = fleet.cluster.leader()
    fleet.cluster.kill(leader)
    leader_killed_at = time.monotonic()
    while time.monotonic() - leader_killed_at < TTL_S + GRACE_S + 2:
        assert set(fleet.seen()) == {"w1", "w2"}, "an instance dropped out after the leader kill"
        time.sleep(0.5)
    count_before = len(load.results)
    wait_for("more answers", lambda: len(load.results) > count_before + 50)
    results = load.finish(threads)
    fleet.cluster.start(leader)

    assert set(fleet.listed()) == {"w1", "w2"}
    failed = [r for r in results if r[2] != 200]
    assert len(failed) <= CLIENT_THREADS, failed
    assert not [r for r in results if r[0] > dropped_at and r[3] == "w3"]
    assert not [r for r in results if r[0] > drained_at and r[3] == "w2"]
    after_kill = [r for r in results if r[0] > leader_killed_at]
    assert after_kill and all(r[2] == 200 for r in after_kill)
    assert {r[3] for r in after_kill} == {"w1"}
