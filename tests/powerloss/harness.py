"""A real 3-node cluster whose data dirs live on power-loss filesystems.

Each member's ``data_dir`` is a symlink to its own ``PowerLossMount``; a
"power cut" SIGKILLs the members and then drops, on each filesystem, all that
was not fsynced. Writers record what the cluster acknowledged.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from pysyncobj.pickle import loads

from mcpctl.client import Client
from mcpctl.errors import McpError
from mcpctl.raft.snapshot import JOURNAL_FILE
from tests.cluster import Cluster, NodeProc, wait_for
from tests.powerloss.mount import PowerLossMount, unavailable_reason

META_FILE = JOURNAL_FILE + ".meta"


def require_fuse() -> None:
    """Skip (outside CI) or fail (in CI) when FUSE cannot run here."""
    reason = unavailable_reason()
    if reason is None:
        return
    if os.environ.get("CI") == "true":
        pytest.fail(f"power-loss tests need FUSE in CI: {reason}")
    pytest.skip(f"power-loss filesystem unavailable: {reason}")


@dataclass
class PowerCluster:
    cluster: Cluster
    mounts: dict[str, PowerLossMount]
    root: Path
    sync_delay_s: float = 0.0

    def mount_for(self, node: NodeProc) -> PowerLossMount:
        """Put a (new) member's data dir on a power-loss filesystem of its own."""
        m = _mount(self.root, node, self.sync_delay_s)
        self.mounts[node.name] = m
        return m

    def node(self, name: str) -> NodeProc:
        return next(n for n in self.cluster.nodes if n.name == name)

    def power_cut(self, nodes: list[NodeProc] | None = None) -> None:
        """SIGKILL the members (all at once), then crash their filesystems."""
        chosen = nodes or self.cluster.nodes
        for n in chosen:
            if n.running:
                assert n.proc is not None
                n.proc.kill()
        for n in chosen:
            if n.proc is not None:
                n.proc.wait(10)
        for n in chosen:
            self.mounts[n.name].crash()

    def lose_disk(self, node: NodeProc) -> None:
        """The member's disk is replaced by an empty one (after a power cut)."""
        for entry in node.data_dir.iterdir():
            entry.unlink()

    def durable_meta(self, node: NodeProc) -> dict[str, object]:
        """The term/vote/commit record as it is on "disk" (read after a crash)."""
        try:
            meta = loads((node.data_dir / META_FILE).read_bytes())
        except (OSError, EOFError, ValueError):
            return {}
        return meta if isinstance(meta, dict) else {}


@contextmanager
def power_cluster(
    root: Path, durability: str, *, sync_delay_s: float = 0.0, **raft: object
) -> Iterator[PowerCluster]:
    require_fuse()
    (root / "cluster").mkdir()
    cluster = Cluster(root / "cluster", extra_config={"raft": {"durability": durability, **raft}})
    mounts: dict[str, PowerLossMount] = {}
    try:
        for n in cluster.nodes:
            mounts[n.name] = _mount(root, n, sync_delay_s)
        cluster.start_all()
        yield PowerCluster(cluster, mounts, root, sync_delay_s)
    finally:
        cluster.close()
        for m in mounts.values():
            m.stop()


def _mount(root: Path, node: NodeProc, sync_delay_s: float = 0.0) -> PowerLossMount:
    m = PowerLossMount(
        root / "backing" / node.name,
        root / "fs" / node.name,
        root / f"{node.name}.fs.log",
        sync_delay_s=sync_delay_s,
    )
    m.start()
    node.data_dir.symlink_to(m.mountpoint, target_is_directory=True)
    return m


@dataclass
class Writers:
    """Threads writing distinct keys; ``acked`` holds what the cluster acknowledged."""

    endpoints: list[str]
    prefix: str = "/pl/"
    threads: int = 4
    acked: dict[str, str] = field(default_factory=dict)
    _stop: threading.Event = field(default_factory=threading.Event)
    _lock: threading.Lock = field(default_factory=threading.Lock)
    _workers: list[threading.Thread] = field(default_factory=list)

    def _run(self, t: int) -> None:
        with Client(self.endpoints, timeout=2.0) as c:
            i = 0
            while not self._stop.is_set():
                key, value = f"{self.prefix}{t}/{i:06d}", f"v{t}-{i}"
                try:
                    c.put(key, value)
                except McpError:
                    continue  # unknown outcome or unavailable: not acknowledged
                with self._lock:
                    self.acked[key] = value
                i += 1

    def start(self) -> None:
        for t in range(self.threads):
            w = threading.Thread(target=self._run, args=(t,), daemon=True)
            w.start()
            self._workers.append(w)

    def wait_acked(self, count: int) -> None:
        wait_for(f"{count} acknowledged writes", lambda: len(self.acked) >= count, 120.0)

    def stop(self) -> dict[str, str]:
        self._stop.set()
        with self._lock:
            frozen = dict(self.acked)
        for w in self._workers:
            w.join(30)
        return frozen


def store_of(node: NodeProc, prefix: str) -> dict[str, tuple[str, int]]:
    with Client([node.endpoint], timeout=5.0) as c:
        got = c.get(prefix, prefix=True, serializable=True)
    return {kv.key: (kv.text, kv.mod_revision) for kv in got.kvs}


def converged_stores(pc: PowerCluster, prefix: str) -> list[dict[str, tuple[str, int]]]:
    """Each member's store once all of them applied the leader's revision."""
    c = pc.cluster
    leader = c.leader()
    revision = c.status(leader).revision
    for n in c.nodes:
        c.wait_applied(n, revision)
    return [store_of(n, prefix) for n in c.nodes]
