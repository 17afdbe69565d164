"""The demo subscriber (`python -m mcpctl.demo.subscriber`) against a real 3-node cluster:
it prints the initial routing table, logs every model added, changed or removed as it
happens (JSON and YAML values), reports an invalid value (one that does not parse, or one
the schema of ``mcpctl apply`` rejects) and keeps the model's last good entry, and stops
with exit code 0 on SIGTERM.

The test writes only after the subscriber printed its ``watching ... from revision R``
line, so every write is a live change; output is read line by line from a reader thread
with bounded waits.
"""

from __future__ import annotations

import json
import os
import queue
import re
import signal
import subprocess
import sys
import threading
from collections.abc import Callable, Iterator
from typing import IO

import pytest

from mcpctl.client import Client
from tests.cluster import Cluster, free_ports

pytestmark = pytest.mark.cluster

PREFIX = "/mcp/models/"
# Generous: other test runs share this 2-core machine.
LINE_TIMEOUT_S = 60.0
EXIT_TIMEOUT_S = 30.0
CLIENT_TIMEOUT_S = 30.0
LINES_MAX = 500

TABLE_HEAD = re.compile(r"^routing table \((\d+) models\):$")
TABLE_ROW = re.compile(r"^  (\S+)\s+(\S+)\s+weight=(\S+)$")

Table = dict[str, tuple[str, str]]  # name -> (endpoint, weight)


class Lines:
    """A pipe read line by line by a thread; ``next()`` waits at most LINE_TIMEOUT_S."""

    def __init__(self, pipe: IO[str], name: str) -> None:
        self.seen: list[str] = []
        self._pipe = pipe
        self._queue: queue.Queue[str | None] = queue.Queue()
        self._thread = threading.Thread(target=self._read, name=name, daemon=True)
        self._thread.start()

    def _read(self) -> None:
        for line in self._pipe:
            self._queue.put(line.rstrip("\n"))
        self._queue.put(None)

    def next(self) -> str:
        try:
            line = self._queue.get(timeout=LINE_TIMEOUT_S)
        except queue.Empty:
            raise TimeoutError(f"no line in {LINE_TIMEOUT_S}s; so far: {self.seen}") from None
        if line is None:
            self._queue.put(None)  # stay at the end for later reads
            raise AssertionError(f"the subscriber exited early: {self.seen}")
        self.seen.append(line)
        return line

    def rest(self) -> str:
        """Everything not read yet, once the process has exited."""
        self._thread.join(EXIT_TIMEOUT_S)
        lines = []
        for _ in range(self._queue.qsize()):
            line = self._queue.get_nowait()
            if line is not None:
                lines.append(line)
        self._pipe.close()
        return "\n".join(lines)


class Subscriber:
    """One subscriber process; its stdout and stderr read line by line with bounded waits."""

    def __init__(self, endpoints: list[str]) -> None:
        self.proc = subprocess.Popen(
            [
                *(sys.executable, "-m", "mcpctl.demo.subscriber"),
                *("--endpoints", ",".join(endpoints), "--prefix", PREFIX),
            ],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            stdin=subprocess.DEVNULL,
            env={k: v for k, v in os.environ.items() if not k.startswith(("MCP_", "MCPCTL_"))},
            text=True,
        )
        assert self.proc.stdout is not None and self.proc.stderr is not None
        self.out = Lines(self.proc.stdout, "subscriber-stdout")
        self.err = Lines(self.proc.stderr, "subscriber-stderr")

    def line(self) -> str:
        return self.out.next()

    def until(self, match: Callable[[str], bool], what: str) -> list[str]:
        """Stdout lines up to and including the first one that ``match``es."""
        seen = []
        for _ in range(LINES_MAX):
            seen.append(self.line())
            if match(seen[-1]):
                return seen
        raise AssertionError(f"no {what} line in {LINES_MAX} lines: {seen}")

    def update(self) -> tuple[list[str], Table]:
        """The change lines before the next routing table, and that table."""
        before = self.until(lambda s: TABLE_HEAD.match(s) is not None, "routing table")
        head = TABLE_HEAD.match(before[-1])
        assert head is not None
        table: Table = {}
        for _ in range(int(head.group(1))):
            row = TABLE_ROW.match(self.line())
            assert row is not None, self.out.seen[-1]
            table[row.group(1)] = (row.group(2), row.group(3))
        return before[:-1], table

    def terminate(self) -> tuple[int, str]:
        """SIGTERM: the exit code and the stderr not read yet."""
        self.proc.send_signal(signal.SIGTERM)
        code = self.proc.wait(EXIT_TIMEOUT_S)
        return code, self.err.rest()

    def close(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(EXIT_TIMEOUT_S)
        self.out.rest()
        self.err.rest()


@pytest.fixture
def subscriber(cluster: Cluster) -> Iterator[Callable[[], Subscriber]]:
    started: list[Subscriber] = []

    def start() -> Subscriber:
        sub = Subscriber(cluster.endpoints)
        started.append(sub)
        return sub

    yield start
    for sub in started:
        sub.close()


def one(lines: list[str]) -> str:
    """The single change line among ``lines`` (timestamp dropped)."""
    assert len(lines) == 1, lines
    stamp, _, rest = lines[0].partition(" ")
    assert re.fullmatch(r"\d\d:\d\d:\d\d", stamp), lines[0]
    return rest


def started_at(sub: Subscriber) -> tuple[list[str], Table, int]:
    """The initial output up to the 'watching' line: change lines, table, revision."""
    changes, table = sub.update()
    watching = sub.line()
    found = re.fullmatch(rf"watching {re.escape(PREFIX)} from revision (\d+)", watching)
    assert found is not None, sub.out.seen
    return changes, table, int(found.group(1))


def test_subscriber_follows_models_added_changed_invalid_and_removed(
    cluster: Cluster, subscriber: Callable[[], Subscriber]
) -> None:
    """Models added, changed, invalid (last good kept) and removed are logged; SIGTERM exits 0."""
    with Client(cluster.endpoints, timeout=CLIENT_TIMEOUT_S) as c:
        c.put(PREFIX + "seed", json.dumps({"endpoint": "http://seed:80"}))
        seeded = c.put("/mcp/other/ignored", "endpoint: http://not-a-model:1").revision
        sub = subscriber()
        changes, table, revision = started_at(sub)
        assert [one([line]) for line in changes] == [
            "model added: seed -> http://seed:80 (weight 1)"
        ]
        assert table == {"seed": ("http://seed:80", "1")}
        assert revision >= seeded  # read after the seed writes; follows from there

        c.put(PREFIX + "alpha", json.dumps({"endpoint": "http://alpha:8080", "weight": 3}))
        changes, table = sub.update()
        assert one(changes) == "model added: alpha -> http://alpha:8080 (weight 3)"
        assert table["alpha"] == ("http://alpha:8080", "3") and len(table) == 2

        c.put(PREFIX + "beta", "endpoint: http://beta:9000\nweight: 2\n")
        changes, table = sub.update()
        assert one(changes) == "model added: beta -> http://beta:9000 (weight 2)"
        assert table["beta"] == ("http://beta:9000", "2") and len(table) == 3

        c.put(PREFIX + "alpha", "endpoint: http://alpha-2:8080\nweight: 5\n")
        changes, table = sub.update()
        assert one(changes) == "model changed: alpha -> http://alpha-2:8080 (weight 5)"
        assert table["alpha"] == ("http://alpha-2:8080", "5")

        # Unparseable, no endpoint, a negative weight, and values that parse but the
        # schema of `apply` rejects: the README's `ftp://oops`, an unknown field.
        for bad in (
            '{"endpoint": "http://half',
            "weight: 2\n",
            "endpoint: http://x\nweight: -1",
            '{"endpoint": "ftp://oops"}',
            "endpoint: http://alpha-3:8080\nwieght: 5\n",
        ):
            c.put(PREFIX + "alpha", bad)
            changes, table = sub.update()
            assert one(changes).startswith("model alpha: invalid config ignored ("), changes
            assert one(changes).endswith("; keeping the last good one")
            if "ftp" in bad:  # the reason is the schema's, naming the field
                assert "endpoint: not an http(s) URL" in one(changes), changes
            assert table["alpha"] == ("http://alpha-2:8080", "5")  # the last good entry

        c.delete(PREFIX + "beta")
        changes, table = sub.update()
        assert one(changes) == "model removed: beta"
        assert set(table) == {"seed", "alpha"}

    code, stderr = sub.terminate()
    assert code == 0, stderr
    assert "Traceback" not in stderr


def test_subscriber_starts_with_an_empty_table_and_a_weight_must_be_an_integer(
    cluster: Cluster, subscriber: Callable[[], Subscriber]
) -> None:
    """An empty prefix gives an empty table; a boolean or float weight, or a bare string
    (not a model mapping, so `apply`'s schema rejects it), is reported invalid."""
    sub = subscriber()
    changes, table, _ = started_at(sub)
    assert changes == [] and table == {}
    with Client(cluster.endpoints, timeout=CLIENT_TIMEOUT_S) as c:
        for bad in (
            "endpoint: http://g:1\nweight: true",
            "endpoint: http://g:1\nweight: 1.5",
            "http://g:1",
        ):
            c.put(PREFIX + "gamma", bad)
            changes, table = sub.update()
            assert one(changes).startswith("model gamma: invalid config ignored ("), changes
            assert table == {}
        c.put(PREFIX + "gamma", "endpoint: http://g:1")
        changes, table = sub.update()
        assert one(changes) == "model added: gamma -> http://g:1 (weight 1)"
        assert table == {"gamma": ("http://g:1", "1")}
    code, stderr = sub.terminate()
    assert code == 0, stderr


def test_subscriber_waits_for_an_unreachable_cluster_and_sigterm_still_exits_0() -> None:
    """With no member reachable the subscriber says it is waiting; SIGTERM still exits 0."""
    (port,) = free_ports(1)  # nothing listens there
    sub = Subscriber([f"127.0.0.1:{port}"])
    try:
        first = sub.err.next()
        assert first.startswith("waiting for the cluster: "), first
        code, stderr = sub.terminate()
        assert code == 0, stderr
        assert "Traceback" not in stderr
        assert sub.out.rest() == ""  # no table: it never had a consistent view
    finally:
        sub.close()
