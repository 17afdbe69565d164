"""Backup and restore: `mcpctl snapshot save` from a live cluster, `restore` into
a fresh cluster that comes up with the same data, revision and history."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from tests.cluster import Cluster

pytestmark = pytest.mark.cluster


def cli(*argv: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "mcpctl", *argv], capture_output=True, text=True, timeout=60
    )


def test_save_then_restore_into_a_fresh_cluster(cluster: Cluster, tmp_path: Path) -> None:
    """The restored cluster has every key, the same revision, the history for
    reads at past revisions, and continues at revision + 1."""
    with cluster.client() as c:
        for i in range(50):
            c.put(f"/mcp/models/m{i % 10}", f"v{i}")
        c.delete("/mcp/models/m0")
        early = c.get("/mcp/models/m1", revision=10).first
        expected = {kv.key: kv.text for kv in c.get("/mcp/", prefix=True).kvs}
    backup = tmp_path / "backup.mcpbak"
    saved = cli(
        "--endpoints", ",".join(cluster.endpoints), "-w", "json", "snapshot", "save", str(backup)
    )
    assert saved.returncode == 0, saved.stderr
    assert '"revision": 51' in saved.stdout
    # It holds every value: its owner's only, and no temp file left beside it.
    assert backup.stat().st_mode & 0o777 == 0o600
    assert [p.name for p in tmp_path.iterdir() if p.name.endswith(".tmp")] == []
    status = cli("snapshot", "status", str(backup))
    assert status.returncode == 0 and "revision 51" in status.stdout and "keys 9" in status.stdout

    (tmp_path / "restored").mkdir()
    fresh = Cluster(tmp_path / "restored")
    try:
        for node in fresh.nodes:
            out = cli("snapshot", "restore", str(backup), "--config", str(node.config_path))
            assert out.returncode == 0, out.stderr
            assert "restored revision 51" in out.stdout
        fresh.start_all()
        with fresh.client() as c:
            got = c.get("/mcp/", prefix=True)
            assert {kv.key: kv.text for kv in got.kvs} == expected
            assert got.header.revision == 51
            past = c.get("/mcp/models/m1", revision=10).first
            assert past is not None and early is not None and past.text == early.text
            assert c.put("/mcp/after-restore", "x").revision == 52
            assert sorted(m.name for m in c.member_list()) == ["n1", "n2", "n3"]
    finally:
        fresh.close()


def test_restore_refuses_damaged_files_and_used_data_dirs(cluster: Cluster, tmp_path: Path) -> None:
    """A corrupted or foreign file and a data dir that already holds data are refused
    with one line and a non-zero exit; nothing is written."""
    backup = tmp_path / "b.mcpbak"
    with cluster.client() as c:
        c.put("/x", "1")
    assert cli("--endpoints", cluster.endpoints[0], "snapshot", "save", str(backup)).returncode == 0
    data = bytearray(backup.read_bytes())
    data[-1] ^= 0xFF
    damaged = tmp_path / "damaged.mcpbak"
    damaged.write_bytes(bytes(data))
    bad = cli("snapshot", "status", str(damaged))
    assert bad.returncode == 1 and bad.stderr.count("\n") == 1 and "checksum" in bad.stderr
    foreign = tmp_path / "foreign.mcpbak"
    foreign.write_bytes(b"hello")
    assert "not an mcp-config backup" in cli("snapshot", "status", str(foreign)).stderr
    used = cluster.nodes[0]  # its data dir holds a journal
    out = cli("snapshot", "restore", str(backup), "--config", str(used.config_path))
    assert out.returncode == 1 and "already holds data" in out.stderr
