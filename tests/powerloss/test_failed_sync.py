"""A member whose journal fdatasync fails exits (code 72) instead of
acknowledging: a retried fsync can report success for data the kernel
already dropped. The others go on committing."""

from __future__ import annotations

from pathlib import Path

from mcpctl.raft.journal import EXIT_SYNC_FAILED
from tests.powerloss.harness import power_cluster


def test_a_failed_journal_sync_stops_the_member(tmp_path: Path) -> None:
    with power_cluster(tmp_path, "fsync") as pc:
        c = pc.cluster
        leader = c.leader()
        victim = next(n for n in c.nodes if n is not leader)
        pc.mounts[victim.name].fail_syncs()
        with c.client(leader) as client:
            client.put("/after-disk-failure", "1")
        assert victim.proc is not None
        assert victim.proc.wait(30) == EXIT_SYNC_FAILED
        assert "raft journal fdatasync failed; exiting" in victim.log_text()
        with c.client(leader) as client:
            assert client.put("/still-writable", "2").revision > 0
