"""Acknowledged writes survive a power cut of the whole cluster (issue #21).

Three members on power-loss filesystems (``tests.powerloss.lazyfs``); writers
get acknowledgements; all three are SIGKILLed and their filesystems drop all
that was not fsynced; on restart every acknowledged write is there, the
members agree, and no member's term went backwards. With
``raft.durability: none`` the same cut loses writes and terms: the
expected-failure half, which shows the check can fail.
"""

from __future__ import annotations

from pathlib import Path

from tests.powerloss.harness import PowerCluster, Writers, converged_stores, power_cluster

ACKED_BEFORE_CUT = 150


def cut_and_check(pc: PowerCluster) -> list[str]:
    """Write, cut the power of every member, restart; the problems found."""
    c = pc.cluster
    writers = Writers(c.endpoints)
    writers.start()
    writers.wait_acked(ACKED_BEFORE_CUT)
    terms = {n.name: c.status(n).term for n in c.nodes}  # writes still in flight
    pc.power_cut()
    acked = writers.stop()
    problems: list[str] = []
    for n in c.nodes:
        durable_term = int(pc.durable_meta(n).get("currentTerm", 0))  # type: ignore[call-overload]
        if durable_term < terms[n.name]:
            problems.append(f"{n.name}: term went back from {terms[n.name]} to {durable_term}")
    c.start_all()
    stores = converged_stores(pc, writers.prefix)
    for n, store in zip(c.nodes, stores, strict=True):
        lost = [k for k, v in acked.items() if store.get(k, ("",))[0] != v]
        if lost:
            problems.append(f"{n.name}: lost {len(lost)} of {len(acked)} acknowledged writes")
        if store != stores[0]:
            problems.append(f"{n.name}: store differs from {c.nodes[0].name}'s")
    return problems


def test_fsync_keeps_every_acknowledged_write_through_a_power_cut(tmp_path: Path) -> None:
    with power_cluster(tmp_path, "fsync") as pc:
        problems = cut_and_check(pc)
        assert not any("raft.durability is none" in n.log_text() for n in pc.cluster.nodes)
    assert problems == []


def test_durability_none_loses_acknowledged_writes_in_a_power_cut(tmp_path: Path) -> None:
    """The expected-failure half: nothing synced, so the cut takes writes and terms."""
    with power_cluster(tmp_path, "none") as pc:
        problems = cut_and_check(pc)
        assert all("raft.durability is none" in n.log_text() for n in pc.cluster.nodes)
    assert any("lost" in p for p in problems), problems
    assert any("term went back" in p for p in problems), problems


# Every fsync on the followers' filesystems takes this long (the leader's is
# fast): a follower that answered AppendEntries before its sync finished
# would let the leader commit, and the client see success, inside that window.
SLOW_SYNC_S = 0.05


def test_acknowledged_writes_are_on_a_follower_disk_when_the_leader_disk_is_lost(
    tmp_path: Path,
) -> None:
    """A write is acknowledged only once a majority has it *on disk*: after a
    power cut in which the leader's disk is lost too, the followers still
    hold every acknowledged write (slow disks, so a follower answering before
    its sync would lose some)."""
    with power_cluster(tmp_path, "fsync") as pc:
        c = pc.cluster
        leader = c.leader()
        for n in c.nodes:
            if n is not leader:
                pc.mounts[n.name].slow_syncs(SLOW_SYNC_S)
        writers = Writers([leader.endpoint])
        writers.start()
        writers.wait_acked(ACKED_BEFORE_CUT)
        pc.power_cut()
        acked = writers.stop()
        pc.lose_disk(leader)
        c.start_all()
        stores = converged_stores(pc, writers.prefix)
        assert all(s == stores[0] for s in stores)
        lost = [k for k, v in acked.items() if stores[0].get(k, ("",))[0] != v]
        assert lost == [], f"lost {len(lost)} of {len(acked)} acknowledged writes"
