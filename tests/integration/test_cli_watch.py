"""`mcpctl watch` as a user runs it, against a real 3-node cluster: the simple and JSON
output contracts (docs/cli.md), history replay with --rev, --prev-kv, DELETE events,
resuming after kill -9 of the member it streams from, Ctrl-C, and usage errors.

Each watch starts at a known revision (``--rev``), so no event can slip past before the
stream is open; output is read line by line from a reader thread with bounded waits.
"""

from __future__ import annotations

import json
import os
import queue
import signal
import subprocess
import sys
import threading
from collections.abc import Iterator
from typing import Any

import pytest

from tests.cluster import Cluster, wait_for

pytestmark = pytest.mark.cluster

# Generous: other test runs share this 2-core machine.
LINE_TIMEOUT_S = 60.0
EXIT_TIMEOUT_S = 30.0
CLIENT_TIMEOUT_S = 30.0
LINES_MAX = 100

KV_FIELDS = {"key", "value", "create_revision", "mod_revision", "version"}
PUT_FIELDS = {"type"} | KV_FIELDS
DELETE_FIELDS = PUT_FIELDS - {"value"}


def clean_env() -> dict[str, str]:
    return {k: v for k, v in os.environ.items() if not k.startswith(("MCP_", "MCPCTL_"))}


def mcpctl(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "mcpctl", *args],
        capture_output=True,
        text=True,
        timeout=EXIT_TIMEOUT_S * 2,
        env=clean_env(),
        stdin=subprocess.DEVNULL,
    )


class WatchProc:
    """One `python -m mcpctl ... watch` process; stdout read line by line with bounded waits."""

    def __init__(self, endpoints: list[str], *args: str) -> None:
        self.lines: list[str] = []
        self._queue: queue.Queue[str | None] = queue.Queue()
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "mcpctl", "--endpoints", ",".join(endpoints), "watch", *args],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            stdin=subprocess.DEVNULL,
            env=clean_env(),
            text=True,
        )
        self._reader = threading.Thread(target=self._read, name="watch-stdout", daemon=True)
        self._reader.start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self._queue.put(line.rstrip("\n"))
        self._queue.put(None)

    def line(self, timeout_s: float = LINE_TIMEOUT_S) -> str:
        """The next stdout line, waiting at most ``timeout_s``."""
        try:
            line = self._queue.get(timeout=timeout_s)
        except queue.Empty:
            raise TimeoutError(
                f"no watch output in {timeout_s}s; so far: {self.lines}; {self._stderr_now()}"
            ) from None
        if line is None:
            self._queue.put(None)  # stay at the end for later reads
            raise AssertionError(f"watch exited early: {self.lines}; {self._stderr_now()}")
        self.lines.append(line)
        return line

    def simple_events(self, count: int) -> list[tuple[str, ...]]:
        """``count`` events of the simple format: (PUT, key, value) or (DELETE, key)."""
        events: list[tuple[str, ...]] = []
        for _ in range(count):
            kind = self.line()
            assert kind in ("PUT", "DELETE"), f"not an event type line: {kind!r}"
            key = self.line()
            events.append((kind, key, self.line()) if kind == "PUT" else (kind, key))
        return events

    def json_events(self, count: int) -> list[dict[str, Any]]:
        out = []
        for _ in range(count):
            obj = json.loads(self.line())
            assert isinstance(obj, dict), obj
            out.append(obj)
        return out

    def interrupt(self) -> tuple[int, str]:
        """Ctrl-C: the exit code and whatever it wrote to stderr."""
        self.proc.send_signal(signal.SIGINT)
        code = self.proc.wait(EXIT_TIMEOUT_S)
        assert self.proc.stderr is not None
        return code, self.proc.stderr.read()

    def _stderr_now(self) -> str:
        if self.proc.poll() is None or self.proc.stderr is None:
            return "still running"
        return f"exit {self.proc.returncode}, stderr: {self.proc.stderr.read()!r}"

    def close(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(EXIT_TIMEOUT_S)
        self._reader.join(EXIT_TIMEOUT_S)
        for pipe in (self.proc.stdout, self.proc.stderr):
            if pipe is not None:
                pipe.close()


@pytest.fixture
def watches() -> Iterator[list[WatchProc]]:
    """Watch processes a test starts are appended here; any left running is killed."""
    started: list[WatchProc] = []
    yield started
    for w in started:
        w.close()


def start_watch(started: list[WatchProc], endpoints: list[str], *args: str) -> WatchProc:
    w = WatchProc(endpoints, *args)
    started.append(w)
    return w


def next_revision(cluster: Cluster) -> int:
    with cluster.client(timeout=CLIENT_TIMEOUT_S) as c:
        return c.get("/", prefix=True, count_only=True).header.revision + 1


def test_simple_output_is_type_key_value_lines_and_delete_has_no_value(
    cluster: Cluster, watches: list[WatchProc]
) -> None:
    """Simple output: a PUT is type/key/value lines, a DELETE type/key; Ctrl-C exits 0."""
    start = next_revision(cluster)
    w = start_watch(watches, cluster.endpoints, "/cli/s/", "--prefix", "--rev", str(start))
    with cluster.client(timeout=CLIENT_TIMEOUT_S) as c:
        c.put("/cli/s/a", "one")
        c.put("/cli/other", "not watched")
        c.put("/cli/s/b", "two words")
        c.put("/cli/s/a", "three")
        c.delete("/cli/s/a")
        c.put("/cli/s/c", "after the delete")  # shows where the DELETE's lines end
    assert w.simple_events(5) == [
        ("PUT", "/cli/s/a", "one"),
        ("PUT", "/cli/s/b", "two words"),
        ("PUT", "/cli/s/a", "three"),
        ("DELETE", "/cli/s/a"),
        ("PUT", "/cli/s/c", "after the delete"),
    ]
    code, stderr = w.interrupt()
    assert (code, stderr) == (0, "")


def test_json_output_has_exactly_the_documented_fields(
    cluster: Cluster, watches: list[WatchProc]
) -> None:
    """-w json prints one object per event with exactly the fields documented in docs/cli.md."""
    start = next_revision(cluster)
    w = start_watch(watches, cluster.endpoints, "-w", "json", "/cli/j", "--rev", str(start))
    with cluster.client(timeout=CLIENT_TIMEOUT_S) as c:
        first = c.put("/cli/j", "x").revision
        second = c.put("/cli/j", "y").revision
        gone = c.delete("/cli/j").header.revision
    put1, put2, delete = w.json_events(3)
    assert put1 == {
        "type": "PUT",
        "key": "/cli/j",
        "value": "x",
        "create_revision": first,
        "mod_revision": first,
        "version": 1,
    }
    assert put2 == {
        "type": "PUT",
        "key": "/cli/j",
        "value": "y",
        "create_revision": first,
        "mod_revision": second,
        "version": 2,
    }
    assert delete == {
        "type": "DELETE",
        "key": "/cli/j",
        "create_revision": 0,
        "mod_revision": gone,
        "version": 0,
    }
    assert set(put1) == PUT_FIELDS and set(delete) == DELETE_FIELDS
    code, _ = w.interrupt()
    assert code == 0


def test_prev_kv_adds_the_previous_key_value_in_json(
    cluster: Cluster, watches: list[WatchProc]
) -> None:
    """--prev-kv -w json adds the documented prev_kv object to overwrites and deletes only."""
    start = next_revision(cluster)
    w = start_watch(
        watches, cluster.endpoints, "-w", "json", "/cli/p", "--prev-kv", "--rev", str(start)
    )
    with cluster.client(timeout=CLIENT_TIMEOUT_S) as c:
        first = c.put("/cli/p", "old").revision
        second = c.put("/cli/p", "new").revision
        c.delete("/cli/p")
    created, overwritten, deleted = w.json_events(3)
    assert "prev_kv" not in created and set(created) == PUT_FIELDS
    old = {"key": "/cli/p", "value": "old", "create_revision": first}
    assert overwritten["prev_kv"] == {**old, "mod_revision": first, "version": 1}
    assert overwritten["value"] == "new" and set(overwritten) == PUT_FIELDS | {"prev_kv"}
    new = {"key": "/cli/p", "value": "new", "create_revision": first}
    assert deleted["prev_kv"] == {**new, "mod_revision": second, "version": 2}
    assert set(deleted) == DELETE_FIELDS | {"prev_kv"}
    code, _ = w.interrupt()
    assert code == 0


def test_rev_replays_history_then_follows_live_writes(
    cluster: Cluster, watches: list[WatchProc]
) -> None:
    """--rev N replays the events from revision N on, then follows live writes, in order."""
    with cluster.client(timeout=CLIENT_TIMEOUT_S) as c:
        revisions = [c.put(f"/cli/r/{i}", f"v{i}").revision for i in range(5)]
        w = start_watch(
            watches,
            cluster.endpoints,
            "-w",
            "json",
            "/cli/r/",
            "--prefix",
            "--rev",
            str(revisions[2]),
        )
        replayed = w.json_events(3)
        assert [e["mod_revision"] for e in replayed] == revisions[2:]
        assert [e["key"] for e in replayed] == ["/cli/r/2", "/cli/r/3", "/cli/r/4"]
        live = c.put("/cli/r/live", "now").revision
    (event,) = w.json_events(1)
    assert (event["key"], event["mod_revision"]) == ("/cli/r/live", live)
    code, _ = w.interrupt()
    assert code == 0


def test_resumes_after_kill_9_of_its_member_with_every_event_once_in_order(
    cluster: Cluster, watches: list[WatchProc]
) -> None:
    """After kill -9 of its member the watch resumes elsewhere: every event once, in order."""
    victim = cluster.nodes[0]
    survivors = [n for n in cluster.nodes if n is not victim]
    start = next_revision(cluster)
    endpoints = [victim.endpoint] + [n.endpoint for n in survivors]
    w = start_watch(watches, endpoints, "-w", "json", "/cli/k/", "--prefix", "--rev", str(start))

    written: list[int] = []
    with cluster.client(*survivors, timeout=CLIENT_TIMEOUT_S) as c:
        for i in range(10):
            written.append(c.put(f"/cli/k/{i:03d}", f"before-{i}").revision)
        before = w.json_events(10)  # streaming from the victim, up to date
        cluster.kill(victim)
        for i in range(10, 30):
            written.append(c.put(f"/cli/k/{i:03d}", f"after-{i}").revision)
    after = w.json_events(20)
    events = before + after
    assert [e["mod_revision"] for e in events] == written
    assert [e["key"] for e in events] == [f"/cli/k/{i:03d}" for i in range(30)]
    code, stderr = w.interrupt()
    assert code == 0, stderr


def test_ctrl_c_exits_0_while_idle(cluster: Cluster, watches: list[WatchProc]) -> None:
    """SIGINT (Ctrl-C) ends an idle watch with exit code 0 and nothing on stderr."""
    start = next_revision(cluster)
    w = start_watch(watches, cluster.endpoints, "/cli/idle", "--rev", str(start))
    with cluster.client(timeout=CLIENT_TIMEOUT_S) as c:
        c.put("/cli/idle", "1")
    assert w.simple_events(1) == [("PUT", "/cli/idle", "1")]  # streaming, now idle
    code, stderr = w.interrupt()
    assert (code, stderr) == (0, "")


def test_progress_prints_bookmarks_never_below_a_printed_event(
    cluster: Cluster, watches: list[WatchProc]
) -> None:
    """--progress -w json prints PROGRESS bookmarks never below an event already printed."""
    start = next_revision(cluster)
    w = start_watch(
        watches, cluster.endpoints, "-w", "json", "--progress", "/cli/pg", "--rev", str(start)
    )
    with cluster.client(timeout=CLIENT_TIMEOUT_S) as c:
        event_revision = c.put("/cli/pg", "x").revision
        other_revision = c.put("/cli/pg-other", "y").revision
    printed = 0
    for _ in range(LINES_MAX):
        (obj,) = w.json_events(1)
        if obj["type"] == "PROGRESS":
            assert set(obj) == {"type", "revision"}, obj
            assert obj["revision"] >= printed, (obj, printed)
            if obj["revision"] >= other_revision:
                break
        else:
            assert (obj["key"], obj["mod_revision"]) == ("/cli/pg", event_revision)
            printed = obj["mod_revision"]
    else:
        raise AssertionError(f"no bookmark reached {other_revision}: {w.lines}")
    assert printed == event_revision
    code, _ = w.interrupt()
    assert code == 0


def test_rev_below_the_compacted_history_exits_1_naming_the_oldest_revision(
    cluster: Cluster,
) -> None:
    """--rev below the compacted history exits 1 with one stderr line naming the oldest revision."""
    with cluster.client(timeout=CLIENT_TIMEOUT_S) as c:
        for i in range(3):
            c.put(f"/cli/c/{i}", str(i))
        compact_at = c.put("/cli/c/last", "x").revision
        c.compact(compact_at)

    def compacted_everywhere() -> bool:  # whichever member the CLI reaches has compacted
        return all(cluster.status(n).compact_revision >= compact_at for n in cluster.nodes)

    wait_for("every member to compact", compacted_everywhere)
    proc = mcpctl(
        "--endpoints", ",".join(cluster.endpoints), "watch", "/cli/c/", "--prefix", "--rev", "1"
    )
    assert proc.returncode == 1, (proc.returncode, proc.stdout, proc.stderr)
    lines = proc.stderr.splitlines()
    assert len(lines) == 1, proc.stderr
    assert (
        lines[0].startswith("mcpctl: compacted: ")
        and f"oldest available is {compact_at}" in lines[0]
    )
    assert proc.stdout == ""


@pytest.mark.parametrize(
    ("args", "fragment"),
    [
        (("--rev", "-1"), "--rev must not be negative"),
        (("--bogus",), "unrecognized arguments: --bogus"),
    ],
)
def test_usage_errors_exit_2_with_one_stderr_line(args: tuple[str, ...], fragment: str) -> None:
    """A negative --rev or an unknown flag exits 2 with exactly one line on stderr."""
    proc = mcpctl("--endpoints", "127.0.0.1:9", "watch", "/k", *args)
    assert proc.returncode == 2, (proc.returncode, proc.stdout, proc.stderr)
    assert proc.stdout == ""
    lines = proc.stderr.splitlines()
    assert len(lines) == 1 and fragment in lines[0], proc.stderr
