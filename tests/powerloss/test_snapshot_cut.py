"""A member's power is cut in the middle of a snapshot (issue #21).

The power-loss filesystem cuts the power at an exact point: right before the
snapshot's rename (the old snapshot must be there, whole), or right before
the journal's rename after a snapshot (the new snapshot is durable, the old
journal still starts before it: it must be aligned, not thrown away). The
member then restarts, its snapshot loads and it converges with the others.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from mcpctl.raft.snapshot import _SNAP_HEAD, DUMP_FILE, JOURNAL_FILE
from tests.cluster import wait_for
from tests.powerloss.harness import Writers, converged_stores, power_cluster

# Snapshots after every ~100 entries (the smallest the config allows).
COMPACTION_MIN_ENTRIES = 100


def snapshot_is_whole(path: Path) -> bool:
    """The snapshot file has every byte its header announces (or is absent)."""
    if not path.exists():
        return True
    data = path.read_bytes()
    if len(data) < _SNAP_HEAD.size:
        return False
    _magic, header_len = _SNAP_HEAD.unpack_from(data)
    header = json.loads(data[_SNAP_HEAD.size : _SNAP_HEAD.size + header_len])
    body: int = sum(size for _idx, _term, size in header["entries"]) + header["store_bytes"]
    whole: bool = len(data) == _SNAP_HEAD.size + header_len + body
    return whole


@pytest.mark.parametrize("cut_before", [DUMP_FILE, JOURNAL_FILE])
def test_a_member_cut_mid_snapshot_comes_back_whole(tmp_path: Path, cut_before: str) -> None:
    with power_cluster(tmp_path, "fsync", compaction_min_entries=COMPACTION_MIN_ENTRIES) as pc:
        c = pc.cluster
        leader = c.leader()
        victim = next(n for n in c.nodes if n is not leader)
        mount = pc.mounts[victim.name]
        mount.crash_before_rename(cut_before)
        writers = Writers([leader.endpoint])
        writers.start()
        wait_for(f"the cut before renaming {cut_before}", lambda: mount.crashes() >= 1, 120.0)
        assert victim.proc is not None
        victim.proc.kill()
        victim.proc.wait(10)
        mount.thaw()
        assert snapshot_is_whole(victim.data_dir / DUMP_FILE)
        if cut_before == JOURNAL_FILE:
            assert (victim.data_dir / DUMP_FILE).exists()
        c.start(victim)
        c.wait_ready([victim])
        acked = writers.stop()
        stores = converged_stores(pc, writers.prefix)
        assert all(s == stores[0] for s in stores)
        assert all(stores[0].get(k, ("",))[0] == v for k, v in acked.items())
        log = victim.log_text()
        assert "failed to load full dump" not in log
        if cut_before == JOURNAL_FILE:
            assert "journal aligned to the snapshot after a crash" in log
