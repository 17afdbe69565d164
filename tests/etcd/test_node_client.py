"""Node's `etcd3` package from npm (installed by `make etcd-node` into .node/)
does a watch and a lease round trip against a 3-node mcp-config cluster."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path

import pytest

from tests.cluster import Cluster

pytestmark = pytest.mark.cluster

ROOT = Path(__file__).resolve().parents[2]
MODULES = ROOT / ".node" / "node_modules"


def test_node_etcd3_watch_and_lease(cluster: Cluster) -> None:
    node = shutil.which("node")
    if node is None or not (MODULES / "etcd3").is_dir():
        reason = "node or the npm etcd3 package is missing: `make etcd-node` installs it"
        if os.environ.get("CI"):
            pytest.fail(reason)
        pytest.skip(reason)
    leader = cluster.leader()  # keepalives are served by the leader (docs/etcd-compat.md)
    proc = subprocess.run(
        [node, str(Path(__file__).with_name("node_client.js")), leader.endpoint],
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, "NODE_PATH": str(MODULES)},
    )
    assert proc.returncode == 0, proc.stderr
    out = json.loads(proc.stdout.strip().splitlines()[-1])
    assert out["get"] == "1"
    assert out["watch"] == [["put", "/js/w/x", "v"], ["delete", "/js/w/x"]]
    assert out["keepalive"] == 60 and out["leased"] is True
    assert out["afterRevoke"] is None
