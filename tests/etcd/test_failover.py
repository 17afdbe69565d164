"""An etcdctl watch across the loss of the member serving it: the member ends
nothing silently, clientv3 reconnects to another member and resumes from the
next revision, and every put arrives exactly once, in order."""

from __future__ import annotations

import queue
import subprocess
import threading
import time
import urllib.request

import pytest

from tests.cluster import Cluster, NodeProc, wait_for
from tests.etcd.conftest import ETCDCTL, ctl_env, etcdctl, need

pytestmark = pytest.mark.cluster


def _open_streams(node: NodeProc) -> float:
    url = f"http://127.0.0.1:{node.metrics_port}/metrics"
    with urllib.request.urlopen(url, timeout=5) as r:
        for line in r.read().decode().splitlines():
            if line.startswith("mcp_watch_streams "):
                return float(line.split()[1])
    return 0.0


def test_watch_survives_the_loss_of_its_member(cluster: Cluster) -> None:
    need(ETCDCTL)
    ep = cluster.endpoints
    proc = subprocess.Popen(
        [ETCDCTL, "--endpoints", ",".join(ep), "watch", "/fo/", "--prefix"],
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
        env=ctl_env(),
    )
    lines: queue.Queue[str] = queue.Queue()
    out = proc.stdout
    assert out is not None

    def read() -> None:
        for line in out:
            lines.put(line.rstrip("\n"))

    threading.Thread(target=read, daemon=True).start()
    got: list[str] = []

    def take(n: int) -> None:
        deadline = time.monotonic() + 60
        while len(got) < n and time.monotonic() < deadline:
            try:
                got.append(lines.get(timeout=0.5))
            except queue.Empty:
                continue

    serving: NodeProc | None = None
    try:
        # The member serving the watch: the one with an open watch stream.
        serving = wait_for(
            "the watch to open",
            lambda: next((n for n in cluster.nodes if _open_streams(n) >= 1), None),
        )
        for i in range(3):
            etcdctl(ep, "put", f"/fo/k{i}", str(i))
        take(9)
        cluster.kill(serving)
        others = [n.endpoint for n in cluster.nodes if n is not serving]
        for i in range(3, 6):
            etcdctl(others, "put", f"/fo/k{i}", str(i))
        take(18)
    finally:
        proc.kill()
        proc.wait()
        if serving is not None and not serving.running:
            cluster.start(serving)
            cluster.wait_ready()
    want = [x for i in range(6) for x in ("PUT", f"/fo/k{i}", str(i))]
    assert got == want
