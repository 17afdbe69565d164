"""The bounded robustness set run by `make test`: each scenario drives a real
3-member cluster with concurrent clients (put, CAS txn, linearizable and
serializable get, watches), injects its faults, and checks the recorded
history (tests/chaos/checks.py): linearizable per key, every acknowledged
write durable, the watch promises on every stream, no acknowledgement from a
cut-off member, writes back within a bound after each fault.

Seeds are fixed, so a failure names the seed and the command that replays it
(`python -m tests.chaos.campaign --replay SEED --faults ...`). The longer
randomized campaign is `make chaos`.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from tests.chaos.scenario import SEED_ENV, Plan, run

pytestmark = [pytest.mark.cluster, pytest.mark.slow]


def check(plan: Plan, tmp_path: Path) -> None:
    outcome = run(plan, tmp_path / plan.name)
    print(outcome.report())
    assert outcome.ok, outcome.report()


def test_kill_leader_then_follower(tmp_path: Path) -> None:
    """kill -9 of the leader, then of a follower; each restarted from its data dir."""
    check(Plan("kill", 101, ("kill_leader", "kill_follower")), tmp_path)


def test_sigstop_leader_then_follower(tmp_path: Path) -> None:
    """SIGSTOP/SIGCONT: a frozen leader is replaced, then comes back with a stale term."""
    check(Plan("pause", 102, ("pause_leader", "pause_follower")), tmp_path)


def test_graceful_restart_then_full_cluster_restart(tmp_path: Path) -> None:
    """A SIGTERM restart of one member, then kill -9 of all three and a cold start."""
    check(Plan("restarts", 103, ("restart", "full_restart")), tmp_path)


def test_partition_cuts_the_leader_from_the_majority(tmp_path: Path, netns_ok: None) -> None:
    """The old leader believes it leads for raft.leader_fallback_ms, yet acknowledges
    no write and serves no linearizable read while it is cut off."""
    check(Plan("partition-leader", 104, ("partition_leader",), netns=True), tmp_path)


def test_partition_cuts_one_follower(tmp_path: Path, netns_ok: None) -> None:
    check(Plan("partition-follower", 105, ("partition_follower",), netns=True), tmp_path)


def test_burst_of_20k_writes_under_load(tmp_path: Path) -> None:
    """20k concurrent writes beside the workload, with Raft log compaction during it."""
    check(Plan("burst", 106, ("burst",)), tmp_path)


def test_membership_change_under_load(tmp_path: Path) -> None:
    """Add a fourth member while clients run, then remove one of the original three."""
    check(Plan("membership", 107, ("membership",)), tmp_path)


def test_replay_a_campaign_seed(tmp_path: Path) -> None:
    """CHAOS_SEED=<seed> replays one campaign run (its plan comes from the seed)."""
    raw = os.environ.get(SEED_ENV)
    if not raw:
        pytest.skip(f"set {SEED_ENV}=<seed> to replay a run of `make chaos`")
    from tests.chaos import netns

    use_netns = netns.unavailable_reason() is None
    check(Plan.random(int(raw), netns=use_netns), tmp_path)
