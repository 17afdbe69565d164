"""ReadIndex (mcpctl/raft/readindex.py) on a real network cut (network namespaces):
a leader cut off from the other members still believes it leads, but serves
no stale linearizable read.

The old leader is cut off from both followers (nft drop, both directions) and
stays reachable from the clients; ``leader_fallback_ms`` is 30 s here, so it
does not step down on its own during the test. The majority elects a new
leader and acknowledges a write. A linearizable read on the old leader must
not return the value before that write: its read index round needs a majority
answering after the read arrived, which it cannot get. It fails (UNAVAILABLE)
instead; after the heal the member reads the new value. With the majority
round skipped (or a time-based leader lease whose clock the cut does not
stop) the read returns the stale value.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from tests.chaos import netns
from tests.chaos.clusters import NetnsCluster, NetnsNode, endpoints
from tests.chaos.worker import WorkerProcess
from tests.cluster import wait_for

pytestmark = [pytest.mark.cluster, pytest.mark.slow]

START_TIMEOUT_S = 60.0
OP_TIMEOUT_S = 8.0  # above the read's bound (proposal_timeout 5 s)
KEY = "/ri/cut"


def _host(node: object) -> netns.Host:
    assert isinstance(node, NetnsNode) and node.host is not None
    return node.host


def test_a_cut_off_leader_serves_no_stale_linearizable_read(tmp_path: Path, netns_ok: None) -> None:
    netns.remove_stale()
    with netns.Network() as network:
        (tmp_path / "cluster").mkdir()
        cluster = NetnsCluster(
            tmp_path / "cluster",
            size=3,
            network=network,
            extra_config={"raft": {"leader_fallback_ms": 30_000}},
        )
        worker: WorkerProcess | None = None
        try:
            cluster.start_all()
            worker = WorkerProcess(tmp_path, network.exec_prefix(network.harness))
            names = [n.name for n in cluster.nodes]
            worker.call("members", endpoints=endpoints(cluster))
            worker.call("wait_ready", names=names, timeout_s=START_TIMEOUT_S)
            old = worker.call("wait_leader", names=names, timeout_s=START_TIMEOUT_S)

            def kv(name: str, value: str | None = None, serializable: bool = False) -> Any:
                assert worker is not None
                return worker.call(
                    "kv",
                    name=name,
                    key=KEY,
                    value=value,
                    serializable=serializable,
                    timeout_s=OP_TIMEOUT_S,
                )

            assert "revision" in kv(old, "before")
            others = [n for n in names if n != old]
            nodes = {n.name: n for n in cluster.nodes}
            network.cut(_host(nodes[old]), [_host(nodes[n]) for n in others])
            new = worker.call("wait_leader", names=others, timeout_s=START_TIMEOUT_S)
            assert "revision" in kv(new, "after")
            # The old leader still leads in its own view, and its store is stale.
            assert worker.call("status", names=[old])[old]["role"] == "leader"
            assert kv(old, serializable=True) == {"value": "before"}
            read = kv(old)
            assert read != {"value": "before"}, "a cut-off leader served a stale read"
            assert read in ({"error": "UNAVAILABLE"}, {"error": "DEADLINE_EXCEEDED"}), read
            network.heal(_host(nodes[old]))

            def fresh() -> bool | None:
                return True if kv(old) == {"value": "after"} else None

            wait_for(f"{old} to read the new value after the heal", fresh, timeout_s=30)
        finally:
            if worker is not None:
                worker.stop()
            cluster.close()
