"""The power of the whole cluster is cut right after a membership change was
acknowledged, with writes in flight (issue #21): the change and every
acknowledged write survive, and the new member catches up to the same store."""

from __future__ import annotations

from pathlib import Path

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
