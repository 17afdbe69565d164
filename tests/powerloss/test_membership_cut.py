"""The power of the whole cluster is cut right after a membership change was
acknowledged, with writes in flight (issue #21): the change and every
acknowledged write survive, and the new member catches up to the same store."""

from __future__ import annotations

import threading
from pathlib import Path

from mcpctl.errors import McpError
from mcpctl.raft.snapshot import JOURNAL_FILE
from tests.cluster import wait_for
from tests.powerloss.harness import Writers, converged_stores, power_cluster


def test_a_power_cut_right_after_a_member_add_keeps_the_change(tmp_path: Path) -> None:
    with power_cluster(tmp_path, "fsync") as pc:
        c = pc.cluster
        old = list(c.nodes)
        writers = Writers([n.endpoint for n in old])
        writers.start()
        writers.wait_acked(50)
        n4 = c.new_member("n4")
        pc.mount_for(n4)
        with c.client(*old) as client:
            added = client.member_add("n4", f"127.0.0.1:{n4.raft_port}", n4.endpoint)
        assert sorted(m.name for m in added) == ["n1", "n2", "n3", "n4"]
        pc.power_cut(old)
        acked = writers.stop()
        for n in old:
            c.start(n)
        c.start(n4)
        c.wait_ready()
        for n in c.nodes:
            with c.client(n) as client:
                assert sorted(m.name for m in client.member_list()) == ["n1", "n2", "n3", "n4"]
        stores = converged_stores(pc, writers.prefix)
        assert all(s == stores[0] for s in stores)
        lost = [k for k, v in acked.items() if stores[0].get(k, ("",))[0] != v]
        assert lost == [], f"lost {len(lost)} of {len(acked)} acknowledged writes"


def test_a_power_cut_during_a_member_add_leaves_one_agreed_membership(tmp_path: Path) -> None:
    """The add is on the leader's disk only: each follower's power is cut as it
    writes the change to its journal, then the whole cluster's. Afterwards the
    old members agree on the membership (with n4 if the leader's entry won,
    without if a follower led and truncated it), and every acknowledged write
    is there."""
    with power_cluster(tmp_path, "fsync") as pc:
        c = pc.cluster
        old = list(c.nodes)
        writers = Writers([n.endpoint for n in old])
        writers.start()
        writers.wait_acked(50)
        n4 = c.new_member("n4")
        pc.mount_for(n4)
        leader = c.leader()
        followers = [n for n in old if n is not leader]
        for f in followers:
            pc.mounts[f.name].crash_on_write(f"127.0.0.1:{n4.raft_port}")
        outcome: list[object] = []

        def add() -> None:
            try:
                with c.client(*old, timeout=3.0) as client:
                    outcome.append(
                        client.member_add("n4", f"127.0.0.1:{n4.raft_port}", n4.endpoint)
                    )
            except McpError as e:
                outcome.append(e)

        adder = threading.Thread(target=add)
        adder.start()
        wait_for(
            "both followers to be cut while writing the change",
            lambda: all(pc.mounts[f.name].crashes() >= 1 for f in followers),
        )
        pc.power_cut(old)
        for f in followers:
            pc.mounts[f.name].thaw()
        change = f"127.0.0.1:{n4.raft_port}".encode()
        assert change in (leader.data_dir / JOURNAL_FILE).read_bytes()  # on its disk
        assert all(change not in (f.data_dir / JOURNAL_FILE).read_bytes() for f in followers)
        adder.join(30)
        acked = writers.stop()
        for n in old:
            c.start(n)
        c.wait_ready(old)
        views = []
        for n in old:
            with c.client(n) as client:
                views.append(sorted(m.name for m in client.member_list()))
        assert all(v == views[0] for v in views), views
        if isinstance(outcome[0], list):  # acknowledged: it must have survived
            assert views[0] == ["n1", "n2", "n3", "n4"]
        if "n4" in views[0]:
            c.start(n4)
            c.wait_ready([n4])
        else:
            c.nodes.remove(n4)
        stores = converged_stores(pc, writers.prefix)
        assert all(s == stores[0] for s in stores)
        lost = [k for k, v in acked.items() if stores[0].get(k, ("",))[0] != v]
        assert lost == [], f"lost {len(lost)} of {len(acked)} acknowledged writes"
