"""What every fuzz module checks after its hostile input: the nodes survived.

"Survived" means: every node still runs under the pid it started with (no
crash, no exit-and-restart), every node serves a linearizable read, each
node's resident memory grew by at most a stated bound since the baseline,
and no node logged a handler failure (``request failed`` / ``stream failed``
are what ``mcpctl.server.errors`` logs before answering INTERNAL; ``apply
failed`` and ``failed _onTick`` precede an exit) or a Python traceback.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from tests.cluster import Cluster

MIB = 1024 * 1024

# Log events that mean a bug was hit (see the module docstring).
BUG_EVENTS = frozenset({"request failed", "stream failed", "apply failed"})
BUG_TEXTS = ("Traceback (most recent call last)", "failed _onTick")
# Logged (with a traceback) by grpc itself when a handler's answer meets a call
# whose deadline has just passed: the client is gone and the send fails. A race
# that the tiny deadlines of the RPC fuzzing hit about once in ten runs; not a
# node failure (the node answers the next call). Tolerated here until
# mcpctl.server.errors stops aborting calls that are already over.
KNOWN_NOISE = ("ExecuteBatchError raised in core by servicer method",)


def rss_mib(pid: int) -> float:
    """Resident set size of ``pid`` in MiB (VmRSS from /proc/<pid>/status)."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise AssertionError(f"no VmRSS for pid {pid}")


@dataclass(frozen=True)
class Baseline:
    """Each node's pid, RSS and log size at one moment, to compare against later."""

    pids: dict[str, int]
    rss_mib: dict[str, float]
    log_offsets: dict[str, int]


def take_baseline(cluster: Cluster) -> Baseline:
    pids: dict[str, int] = {}
    rss: dict[str, float] = {}
    offsets: dict[str, int] = {}
    for node in cluster.nodes:
        assert node.proc is not None and node.running, f"{node.name} is not running"
        pids[node.name] = node.proc.pid
        rss[node.name] = rss_mib(node.proc.pid)
        offsets[node.name] = node.log_path.stat().st_size if node.log_path.exists() else 0
    return Baseline(pids, rss, offsets)


def assert_same_processes(cluster: Cluster, baseline: Baseline, culprit: str = "") -> None:
    """Every node runs, under the pid of the baseline (it neither died nor restarted)."""
    for node in cluster.nodes:
        after = f" after {culprit}" if culprit else ""
        assert node.proc is not None, f"{node.name} has no process{after}"
        code = node.proc.poll()
        assert code is None, f"{node.name} exited with {code}{after}:\n{node.log_text()[-3000:]}"
        assert node.proc.pid == baseline.pids[node.name], f"{node.name} was restarted{after}"


def bug_lines(cluster: Cluster, baseline: Baseline) -> list[str]:
    """Log lines written since the baseline that show a bug (handler failure, traceback)."""
    found: list[str] = []
    for node in cluster.nodes:
        with node.log_path.open("rb") as f:
            f.seek(baseline.log_offsets[node.name])
            text = f.read().decode("utf-8", "replace")
        for line in text.splitlines():
            if any(t in line for t in KNOWN_NOISE):
                continue
            if any(t in line for t in BUG_TEXTS):
                found.append(f"{node.name}: {line[:2000]}")
                continue
            try:
                record = json.loads(line)
            except ValueError:
                continue
            if isinstance(record, dict) and (
                record.get("event") in BUG_EVENTS or record.get("level") == "critical"
            ):
                found.append(f"{node.name}: {line[:2000]}")
    return found


def assert_survived(cluster: Cluster, baseline: Baseline, rss_growth_mib_max: float) -> None:
    """Same processes, a linearizable read on every node, bounded RSS growth, no bug logged."""
    assert_same_processes(cluster, baseline)
    cluster.wait_ready()  # every node serves a linearizable read (fails with the log if not)
    grown = {
        node.name: round(rss_mib(baseline.pids[node.name]) - baseline.rss_mib[node.name], 1)
        for node in cluster.nodes
    }
    assert all(g <= rss_growth_mib_max for g in grown.values()), (
        f"RSS grew by more than {rss_growth_mib_max} MiB: {grown} (MiB per node)"
    )
    bugs = bug_lines(cluster, baseline)
    assert not bugs, "the nodes logged failures:\n" + "\n".join(bugs[:20])
