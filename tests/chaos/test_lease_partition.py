"""Issue #14: leases across a real partition that cuts the leader off (network namespaces).

A 3-node cluster, each member in its own namespace; two lease owners run in
the harness namespace (the chaos worker) and keep 3 s leases with two keys
each alive every TTL/3 on whichever member leads. Then the leader is cut off
from both followers (nft, silent drop) — the harness still reaches it, as a
client on the old leader's side of a real split would — and owner B stops its
keepalives at that moment (it died). The cut is held past TTL + grace and
until B's keys are gone, then healed.

- Owner A's lease is never revoked: polls of its keys on both majority
  members always find them, A never gets a ttl-0 answer, and no member's
  history has a DELETE of A's keys (so no expiry — the old leader's, cut
  off, or the new leader's — was ever committed). A's keepalives reached the
  old leader while it still believed it led and then the new leader.
- A lease granted on the majority side during the cut is unknown to the cut-off
  leader: its keepalive there is answered UNAVAILABLE, never the final "ttl 0,
  lease not found" (that leader has not heard from a majority lately).
- Owner B's lease is expired by the majority side while the cut lasts, within
  TTL + grace + the max election timeout (+ a margin for the fence entry,
  the clock's tick and the poll) of B's stop, never before B's last positive
  keepalive + TTL; both keys in one revision, recorded as ``lease-expiry``,
  the same history on every member after the heal.

``raft.leader_fallback_ms`` is 5 s here (default 2 s): the old leader keeps
answering A's keepalives for 5 s after the cut, longer than the new leader
needs to start its clock plus A's checkpointed remaining TTL (about 1.5 + 2..3
s). Only the grace (fallback + election + margin = 7 s) keeps the new leader
from expiring A meanwhile; with the 2 s default a lease kept alive at TTL/3
would survive without any grace, and the test could not tell.
"""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from mcpctl.server.lessor import lease_grace_s
from tests.chaos import netns
from tests.chaos.clusters import NetnsCluster, NetnsNode, endpoints
from tests.chaos.history import Result
from tests.chaos.leases import LeaseOp, LeaseOpKind, lease_key
from tests.chaos.worker import WorkerProcess
from tests.cluster import NodeProc

pytestmark = [pytest.mark.cluster, pytest.mark.slow]

TTL_S = 3
KEYS = 2
FALLBACK_S = 5.0
ELECTION_MAX_S = 1.0
GRACE_S = lease_grace_s(FALLBACK_S, ELECTION_MAX_S)
# The fence entry of the new leader's term, the clock's 0.1 s tick, the
# expiry's commit and the 0.2 s poll.
EXPIRY_MARGIN_S = 2.0
EXPIRY_BOUND_S = TTL_S + GRACE_S + ELECTION_MAX_S + EXPIRY_MARGIN_S
CUT_MIN_S = TTL_S + GRACE_S + 1.0
POLL_S = 0.2
START_TIMEOUT_S = 60.0
CONFIG = {"raft": {"leader_fallback_ms": int(FALLBACK_S * 1000)}}


def _host(node: NodeProc) -> netns.Host:
    assert isinstance(node, NetnsNode) and node.host is not None
    return node.host


def _keys(owner: str) -> list[str]:
    return [lease_key(owner, 1, i) for i in range(KEYS)]


def test_a_kept_alive_lease_survives_a_cut_off_leader_and_a_dead_owners_lease_expires(
    tmp_path: Path, netns_ok: None
) -> None:
    netns.remove_stale()
    with netns.Network() as network:
        (tmp_path / "cluster").mkdir()
        cluster = NetnsCluster(tmp_path / "cluster", size=3, network=network, extra_config=CONFIG)
        worker: WorkerProcess | None = None
        try:
            cluster.start_all()
            worker = WorkerProcess(tmp_path, network.exec_prefix(network.harness))
            names = [n.name for n in cluster.nodes]
            worker.call("members", endpoints=endpoints(cluster))
            worker.call("wait_ready", names=names, timeout_s=START_TIMEOUT_S)
            old = worker.call("wait_leader", names=names, timeout_s=START_TIMEOUT_S)
            majority = [n for n in names if n != old]
            started = time.monotonic()
            for owner in ("A", "B"):
                worker.call("lease_hold", name=owner, ttl=TTL_S, keys=KEYS)
            # Ready: each lease renewed a few times (the leader's clock runs).
            for owner in ("A", "B"):
                worker.call("lease_wait", name=owner, renewals=3, since=started, timeout_s=30.0)
            worker.call(
                "lease_poll", keys=_keys("A") + _keys("B"), names=majority, interval_s=POLL_S
            )

            nodes = {n.name: n for n in cluster.nodes}
            network.cut(_host(nodes[old]), [_host(nodes[n]) for n in majority])
            cut_at = time.monotonic()
            stopped_at = worker.call("lease_silence", name="B")
            # A lease granted on the majority side after the cut, asked of the cut-off
            # leader while PySyncObj still calls it leader (FALLBACK_S): it must not
            # answer the final "ttl 0, lease not found" for a lease it cannot know.
            probe = worker.call("lease_probe_unknown", grant_on=majority, ask=old, timeout_s=3.0)
            probed_at = time.monotonic()
            try:
                gone = worker.call(
                    "lease_wait_gone",
                    key=_keys("B")[0],
                    since=stopped_at,
                    timeout_s=EXPIRY_BOUND_S + 5.0,
                )
                left = cut_at + CUT_MIN_S - time.monotonic()
                if left > 0:
                    time.sleep(left)  # the fault's length, not a readiness wait
            finally:
                network.heal(_host(nodes[old]))
            healed_at = time.monotonic()

            leader = worker.call("wait_leader", names=names, timeout_s=START_TIMEOUT_S)
            worker.call("wait_ready", names=names, timeout_s=START_TIMEOUT_S)
            # A is still kept alive after the heal (the leader may have changed
            # again: the old one comes back with a higher term).
            worker.call("lease_wait", name="A", renewals=3, since=healed_at, timeout_s=30.0)
            ops = [LeaseOp.from_json(line) for line in worker.call("lease_stop", timeout_s=20.0)]
            histories = {
                n: worker.call("key_history", name=n, key="/chaos-lease/", prefix=True)
                for n in names
            }
        finally:
            if worker is not None:
                worker.stop()
            cluster.close()

    a_ops = [op for op in ops if op.owner == "A"]
    b_ops = [op for op in ops if op.owner == "B"]
    polls = [op for op in ops if op.kind is LeaseOpKind.READ and op.result is Result.OK]
    renewals_a = [op for op in a_ops if op.renewed]
    during_cut = [op for op in renewals_a if cut_at <= op.invoke < healed_at]
    print(
        f"old leader {old}, after the heal {leader}; cut {healed_at - cut_at:.1f}s; "
        f"B's keys gone {gone['complete'] - stopped_at:.1f}s after B stopped (bound "
        f"{EXPIRY_BOUND_S:.0f}s) on {gone['member']}; A renewed by "
        f"{sorted({(op.member, round(op.invoke - cut_at, 1)) for op in during_cut})}"
    )

    # -- A: never revoked, never expired ------------------------------------------
    told_gone = [
        op.short()
        for op in a_ops
        if op.kind is LeaseOpKind.KEEPALIVE and op.result is Result.OK and op.ttl <= 0
    ]
    assert told_gone == [], "A's owner was told its lease is gone"
    missing = [op.short() for op in polls if op.key in _keys("A") and op.value is None]
    assert missing == [], "A's key disappeared"
    for name, history in histories.items():
        deletes_a = [h for h in history if h[3] in _keys("A") and h[1] == "DELETE"]
        assert deletes_a == [], f"{name}: A's keys were deleted: {deletes_a}"
    # The scenario really happened: the cut-off leader still renewed A (it
    # believed it led for leader_fallback_ms), then a majority member did.
    assert any(op.member == old for op in during_cut), "the old leader never renewed A in the cut"
    assert any(op.member in majority for op in during_cut), "A never reached the new leader"

    # -- a lease the cut-off leader cannot know --------------------------------------
    assert probed_at - cut_at < FALLBACK_S, "probed after the old leader stepped down"
    assert probe == "Unavailable", f"the cut-off leader answered {probe} for a lease it cannot know"

    # -- B: expired by the majority, in time, never early ----------------------------
    last_b = max(op.invoke for op in b_ops if op.renewed)
    assert gone["member"] in majority
    assert gone["complete"] <= healed_at, "B's lease was not expired while the cut lasted"
    assert gone["complete"] - stopped_at <= EXPIRY_BOUND_S, (
        f"B's keys went {gone['complete'] - stopped_at:.1f}s after its owner stopped "
        f"(bound TTL + grace + election + margin = {EXPIRY_BOUND_S:.0f}s)"
    )
    reference = histories[majority[0]]
    for name, history in histories.items():
        assert history == reference, f"{name}'s history of the lease keys differs: {history}"
    deletes_b = [h for h in reference if h[3] in _keys("B") and h[1] == "DELETE"]
    assert sorted(h[3] for h in deletes_b) == _keys("B"), deletes_b
    assert len({h[0] for h in deletes_b}) == 1, f"B's keys went in several revisions: {deletes_b}"
    assert {h[2] for h in deletes_b} == {"lease-expiry"}, deletes_b
    # Never early: the expiry came no sooner than TTL after B's last renewal
    # was sent (the poll that saw the keys gone completed after the expiry).
    early = [
        op.short()
        for op in polls
        if op.key in _keys("B") and op.value is None and op.complete < last_b + TTL_S
    ]
    assert early == [], "B's lease expired before its TTL ran out"
