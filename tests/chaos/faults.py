"""The fault injector: each fault is injected, held, healed and recorded.

Loopback faults (processes on any host): kill -9 of the leader or of a
follower, SIGSTOP/SIGCONT of the leader or of a follower, a graceful restart,
a full-cluster restart (kill -9 of every member, then start them all), a 20k
write burst, a membership change under load (add a fourth member, then
remove one of the original three). Namespace faults: a partition that cuts
the leader from the majority, and one that cuts a single follower.

A fault is held until the workload has done ``HOLD_OPS`` more operations or
``hold_s`` (drawn from the run's random generator) has passed, whichever
comes first — a bounded wait on the workload's progress, so a fault is
exercised by real traffic on a slow machine too. After healing, the
injector waits (bounded) until the cluster has one leader, every member
serves linearizable reads, and a write invoked after the heal was
acknowledged; a timeout there is a liveness failure and ends the run.
"""

from __future__ import annotations

import random
import time
from dataclasses import dataclass, field
from typing import Any

from tests.chaos.checks import LIVENESS_S, FaultRecord
from tests.chaos.clusters import NetnsCluster, NetnsNode, endpoints, raft_address
from tests.chaos.netns import Network
from tests.chaos.worker import WorkerProcess
from tests.cluster import Cluster, NodeProc

HOLD_OPS = 400
RECOVER_TIMEOUT_S = 45.0
BURST_WRITES = 20_000
BURST_CONCURRENCY = 64
# A partition is held past raft.leader_fallback_ms (2 s), so both phases are
# seen: the cut-off leader still believing it leads, then stepping down.
PARTITION_HOLD_S = (3.5, 6.0)
PROBE_OP_TIMEOUT_S = 1.0

LOOPBACK_FAULTS = (
    "kill_leader",
    "kill_follower",
    "pause_leader",
    "pause_follower",
    "restart",
    "full_restart",
    "burst",
    "membership",
    "membership_remove_leader",
)
NETNS_FAULTS = ("partition_leader", "partition_follower")


class LivenessError(AssertionError):
    """The cluster did not recover within its bound after a fault healed."""


@dataclass
class Injector:
    cluster: Cluster
    worker: WorkerProcess
    rng: random.Random
    network: Network | None = None
    records: list[FaultRecord] = field(default_factory=list)
    # Members that left (membership change): never restarted or checked.
    removed: set[str] = field(default_factory=set)
    notes: list[str] = field(default_factory=list)
    _added: int = 0

    # -- helpers --------------------------------------------------------------
    @property
    def members(self) -> list[NodeProc]:
        return [n for n in self.cluster.nodes if n.name not in self.removed]

    def names(self, nodes: list[NodeProc] | None = None) -> list[str]:
        return [n.name for n in (nodes if nodes is not None else self.members)]

    def node(self, name: str) -> NodeProc:
        return next(n for n in self.cluster.nodes if n.name == name)

    def leader(self) -> NodeProc:
        running = [n for n in self.members if n.running]
        name = self.worker.call(
            "wait_leader",
            names=self.names(running),
            timeout_s=RECOVER_TIMEOUT_S,
        )
        return self.node(name)

    def follower(self) -> NodeProc:
        leader = self.leader()
        return self.rng.choice([n for n in self.members if n is not leader and n.running])

    def hold(self, hold_s: tuple[float, float] = (1.5, 3.0)) -> None:
        limit = self.rng.uniform(*hold_s)
        self.worker.call("wait_ops", count=HOLD_OPS, timeout_s=limit)

    def held_for(self, duration_s: float) -> None:
        """A fault that must last a given time (a partition past the fallback)."""
        deadline = time.monotonic() + duration_s
        while time.monotonic() < deadline:
            left = deadline - time.monotonic()
            self.worker.call("wait_ops", count=10**9, timeout_s=left)

    def recover(self, healed_at: float) -> None:
        """Every member up, one leader, linearizable reads everywhere, a write acked."""
        for node in self.members:
            if not node.running:
                self.cluster.start(node)
        try:
            self.leader()
            self.worker.call(
                "wait_ready",
                names=self.names(),
                timeout_s=RECOVER_TIMEOUT_S,
            )
        except Exception as e:
            raise LivenessError(f"the cluster did not recover after healing: {e}") from e
        acked = self.worker.call("wait_write", since=healed_at, timeout_s=LIVENESS_S * 3)
        if acked is None:
            raise LivenessError(f"no write acknowledged within {LIVENESS_S * 3:.0f}s of healing")

    def _record(
        self, kind: str, nodes: list[NodeProc], start: float, end: float, **kw: Any
    ) -> None:
        self.records.append(FaultRecord(kind, tuple(self.names(nodes)), start, end, **kw))

    # -- faults -----------------------------------------------------------------
    def run(self, kind: str) -> FaultRecord:
        getattr(self, kind)()
        record = self.records[-1]
        self.recover(record.end)
        return record

    def _kill(self, kind: str, victim: NodeProc) -> None:
        start = time.monotonic()
        self.cluster.kill(victim)
        self.hold()
        end = time.monotonic()
        self.cluster.start(victim)
        self._record(kind, [victim], start, end, majority_kept=True)

    def kill_leader(self) -> None:
        self._kill("kill_leader", self.leader())

    def kill_follower(self) -> None:
        self._kill("kill_follower", self.follower())

    def _pause(self, kind: str, victim: NodeProc) -> None:
        start = time.monotonic()
        self.cluster.pause(victim)
        try:
            self.hold()
        finally:
            end = time.monotonic()
            self.cluster.resume(victim)
        self._record(kind, [victim], start, end, majority_kept=True)

    def pause_leader(self) -> None:
        self._pause("pause_leader", self.leader())

    def pause_follower(self) -> None:
        self._pause("pause_follower", self.follower())

    def restart(self) -> None:
        victim = self.rng.choice([n for n in self.members if n.running])
        start = time.monotonic()
        code = self.cluster.stop(victim)
        if code != 0:
            self.notes.append(f"graceful stop of {victim.name} exited {code}")
        self.cluster.start(victim)
        self._record("restart", [victim], start, time.monotonic(), majority_kept=True)

    def full_restart(self) -> None:
        start = time.monotonic()
        victims = [n for n in self.members if n.running]
        for node in victims:
            self.cluster.kill(node)
        self.hold((0.5, 1.5))
        end = time.monotonic()
        for node in victims:
            self.cluster.start(node)
        self._record("full_restart", victims, start, end)

    def burst(self) -> None:
        start = time.monotonic()
        counts = self.worker.call(
            "burst",
            total=BURST_WRITES,
            concurrency=BURST_CONCURRENCY,
            names=self.names([n for n in self.members if n.running]),
            deadline_s=600,
        )
        self.notes.append(f"burst of {BURST_WRITES}: {counts}")
        self._record(
            "burst", self.members, start, time.monotonic(), majority_kept=True, note=str(counts)
        )

    def membership(self) -> None:
        """Add a member under load, then remove one of the others (never the new one)."""
        self._membership(remove_leader=False)

    def membership_remove_leader(self) -> None:
        """The same, but the member removed is the one leading at that moment."""
        self._membership(remove_leader=True)

    def _membership(self, *, remove_leader: bool) -> None:
        self._added += 1
        start = time.monotonic()
        new = self.cluster.new_member(f"n{len(self.cluster.nodes) + 1}")
        self.worker.call(
            "member_add",
            name=new.name,
            raft=raft_address(new),
            client=new.endpoint,
            timeout_s=15.0,
        )
        self.cluster.start(new)
        self.worker.call("wait_ready", names=[new.name], timeout_s=RECOVER_TIMEOUT_S)
        self.hold()
        others = [n for n in self.members if n is not new]
        leader = self.leader()
        gone = leader if remove_leader and leader is not new else self.rng.choice(others)
        self.worker.call("member_remove", name=gone.name, timeout_s=15.0)
        self.removed.add(gone.name)
        self._wait_exit(gone)
        self._record(
            "membership",
            [new, gone],
            start,
            time.monotonic(),
            majority_kept=True,
            note=f"added {new.name}, removed {gone.name}",
        )

    def _wait_exit(self, node: NodeProc) -> None:
        """A removed member stops by itself; kill it if it has not within the bound."""
        proc = node.proc
        if proc is None:
            return
        try:
            proc.wait(RECOVER_TIMEOUT_S / 3)
        except Exception:
            self.notes.append(f"removed member {node.name} did not exit by itself; killed")
            self.cluster.kill(node)

    def _partition(self, kind: str, victim: NodeProc) -> None:
        assert self.network is not None and isinstance(self.cluster, NetnsCluster)
        host = _host(victim)
        peers = [_host(n) for n in self.members if n is not victim]
        self.network.cut(host, peers)
        start = time.monotonic()
        hold_s = self.rng.uniform(*PARTITION_HOLD_S)
        try:
            seen = self.worker.call(
                "probe",
                name=victim.name,
                duration_s=hold_s,
                op_timeout_s=PROBE_OP_TIMEOUT_S,
            )
            self.held_for(max(0.0, start + hold_s - time.monotonic()))
        finally:
            end = time.monotonic()
            self.network.heal(host)
        claimed = [s["t"] - start for s in seen if s.get("role") == "leader"]
        note = (
            f"{victim.name} cut off for {end - start:.1f}s: "
            + (f"still said it led until +{max(claimed):.1f}s" if claimed else "never said it led")
            + f" ({len(seen)} status answers)"
        )
        self.notes.append(note)
        self._record(
            kind, [victim], start, end, isolated=(victim.name,), majority_kept=True, note=note
        )

    def partition_leader(self) -> None:
        self._partition("partition_leader", self.leader())

    def partition_follower(self) -> None:
        self._partition("partition_follower", self.follower())


def _host(node: NodeProc) -> Any:
    assert isinstance(node, NetnsNode) and node.host is not None
    return node.host


def available_faults(netns: bool) -> tuple[str, ...]:
    return LOOPBACK_FAULTS + (NETNS_FAULTS if netns else ())


def member_endpoints(injector: Injector) -> dict[str, str]:
    return endpoints(injector.cluster, injector.members)


__all__ = [
    "LOOPBACK_FAULTS",
    "NETNS_FAULTS",
    "Injector",
    "LivenessError",
    "available_faults",
    "member_endpoints",
]
