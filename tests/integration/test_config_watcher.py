"""ConfigWatcher on real 3-node clusters: a consistent live copy of a prefix.

The copy is compared with a linearizable read; the sequence of ``on_change``
calls is recorded as a watch stream and checked with the watch checker
(tests/watchcheck.py) against the reference history and the write log, so a
missed, repeated, reordered or half-delivered change fails the test. Faults:
kill -9 of the node it watches through, a history compacted while it is
stuck behind a slow callback.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from mcpctl.client import Client, KeyValue
from mcpctl.client.watcher import Change, ConfigWatcher
from tests.cluster import Cluster, NodeProc, running_cluster, wait_for
from tests.watchcheck import (
    Ev,
    EventType,
    Kind,
    StreamRecord,
    WriteLog,
    Writer,
    assert_ok,
    check_all,
    final_revision,
    read_reference,
)

pytestmark = pytest.mark.cluster

WAIT_S = 60.0  # generous: the machine is shared with other test runs
WRITER_WAIT_S = 120.0


@pytest.fixture(scope="module")
def shared(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    with running_cluster(tmp_path_factory.mktemp("config-watcher")) as c:
        yield c


@pytest.fixture
def client(shared: Cluster) -> Iterator[Client]:
    with shared.client() as c:
        yield c


class Changes:
    """Every on_change call, in order (thread-safe)."""

    def __init__(self) -> None:
        self.calls: list[list[Change]] = []
        self._lock = threading.Lock()

    def __call__(self, changes: list[Change]) -> None:
        with self._lock:
            self.calls.append(list(changes))

    @property
    def flat(self) -> list[Change]:
        with self._lock:
            return [ch for call in self.calls for ch in call]

    def as_stream(self, prefix: str, start_revision: int) -> StreamRecord:
        """The calls as a watch stream, one message per call, for the watch checker."""
        record = StreamRecord("on_change", prefix, prefix=True, start_revision=start_revision)
        with self._lock:
            calls = [list(c) for c in self.calls]
        for call in calls:
            events = [
                Ev(ch.revision, ch.key, EventType(ch.type), ch.value or b"", ch.prev_value)
                for ch in call
            ]
            record.add(Kind.EVENTS, events[-1].revision, events, "")
        return record


def values(kvs: dict[str, KeyValue] | list[KeyValue]) -> dict[str, tuple[bytes, int]]:
    items = kvs.values() if isinstance(kvs, dict) else kvs
    return {kv.key: (kv.value, kv.mod_revision) for kv in items}


def assert_copy_is_current(watcher: ConfigWatcher, c: Client, prefix: str) -> int:
    """The copy reflects the latest revision and equals a linearizable read of it."""
    final = final_revision(c)
    assert watcher.wait_for_revision(final, WAIT_S), f"copy stuck at {watcher.revision} < {final}"
    assert values(watcher.snapshot()) == values(c.get(prefix, prefix=True).kvs)
    return final


def check_changes(
    changes: Changes, c: Client, prefix: str, start: int, log: WriteLog, final: int
) -> None:
    """The on_change sequence keeps the watch promises against history and write log."""
    reference = read_reference(c, final, start_revision=start)
    record = changes.as_stream(prefix, start)
    assert_ok(check_all([record], reference, log.since(start), through=final), "on_change calls")


# ---------------------------------------------------------------- basics
def test_initial_copy_then_live_changes(shared: Cluster, client: Client) -> None:
    """start() copies the prefix; later puts and deletes reach the copy and on_change."""
    c = client
    log = WriteLog()
    base = final_revision(c) + 1
    log.put(c, "/cw1/a", b"a1")
    log.put(c, "/cw1/b", b"b1")
    log.put(c, "/cw1x/outside", b"no")
    changes = Changes()
    with shared.client(shared.nodes[2]) as wc:
        watcher = ConfigWatcher(wc, "/cw1/", on_change=changes, initial_changes=True)
        with watcher:
            start = watcher.revision
            assert values(watcher.snapshot()) == values(c.get("/cw1/", prefix=True).kvs)
            assert watcher.get("/cw1/a") == b"a1" and watcher.get("/cw1x/outside") is None
            assert [(ch.type, ch.key, ch.value, ch.prev_value) for ch in changes.flat] == [
                ("PUT", "/cw1/a", b"a1", None),
                ("PUT", "/cw1/b", b"b1", None),
            ]
            initial_calls = len(changes.calls)

            log.put(c, "/cw1/a", b"a2")
            log.delete(c, "/cw1/b")
            log.put(c, "/cw1x/outside", b"still no")
            log.put(c, "/cw1/c", b"c1")
            final = assert_copy_is_current(watcher, c, "/cw1/")
            live = [ch for call in changes.calls[initial_calls:] for ch in call]
            assert [(ch.type, ch.key, ch.value, ch.prev_value) for ch in live] == [
                ("PUT", "/cw1/a", b"a2", b"a1"),
                ("DELETE", "/cw1/b", None, b"b1"),
                ("PUT", "/cw1/c", b"c1", None),
            ]
            later = Changes()
            later.calls = changes.calls[initial_calls:]
            reference = read_reference(c, final, start_revision=base)
            record = later.as_stream("/cw1/", start + 1)
            assert_ok(check_all([record], reference, log, through=final), "on_change calls")


def test_a_txn_arrives_in_one_on_change_call(shared: Cluster, client: Client) -> None:
    """All changes of one txn come in a single on_change call, never split."""
    c = client
    log = WriteLog()
    changes = Changes()
    with ConfigWatcher(c, "/cw2/", on_change=changes) as watcher:
        start = watcher.revision + 1
        log.put(c, "/cw2/before", b"0")
        revision = log.txn_puts(c, [(f"/cw2/k{i}", f"v{i}".encode()) for i in range(20)])
        log.put(c, "/cw2/after", b"0")
        assert revision is not None
        final = assert_copy_is_current(watcher, c, "/cw2/")
        holding = [call for call in changes.calls if any(ch.revision == revision for ch in call)]
        assert len(holding) == 1
        assert sorted(ch.key for ch in holding[0]) == sorted(f"/cw2/k{i}" for i in range(20))
        assert all(ch.revision == revision for ch in holding[0])
        check_changes(changes, c, "/cw2/", start, log, final)


def test_wait_for_revision_returns_when_reached_or_when_time_runs_out(
    shared: Cluster, client: Client
) -> None:
    """wait_for_revision is True once the copy reflects a revision, False on timeout."""
    c = client
    with ConfigWatcher(c, "/cw3/") as watcher:
        now = watcher.revision
        assert watcher.wait_for_revision(now, WAIT_S)
        result: list[bool] = []
        waiter = threading.Thread(
            target=lambda: result.append(watcher.wait_for_revision(now + 1, WAIT_S))
        )
        waiter.start()
        revision = c.put("/cw3/k", "1").revision
        waiter.join(WAIT_S + 5)
        assert result == [True]
        assert watcher.revision >= revision and watcher.get("/cw3/k") == b"1"
        assert watcher.wait_for_revision(revision + 1_000_000, 0.3) is False


def test_callbacks_that_raise_do_not_stop_the_watcher(shared: Cluster, client: Client) -> None:
    """An on_change that raises every time is logged; the copy and later calls go on."""
    c = client
    calls: list[list[Change]] = []

    def broken(changes: list[Change]) -> None:
        calls.append(changes)
        raise RuntimeError("a buggy subscriber")

    with ConfigWatcher(c, "/cw4/", on_change=broken) as watcher:
        for i in range(5):
            c.put(f"/cw4/k{i}", f"v{i}")
        assert_copy_is_current(watcher, c, "/cw4/")
        assert [ch.key for call in calls for ch in call] == [f"/cw4/k{i}" for i in range(5)]
        c.put("/cw4/k0", "again")
        assert_copy_is_current(watcher, c, "/cw4/")
        assert watcher.get("/cw4/k0") == b"again"


# ---------------------------------------------------------------- failures
@pytest.mark.slow
def test_survives_kill_9_of_the_node_it_watches_through(tmp_path: Path) -> None:
    """kill -9 of the member it follows: the copy and the change sequence miss nothing."""
    with running_cluster(tmp_path) as cluster:
        leader = cluster.leader()
        rest = [n for n in cluster.nodes if n is not leader]
        log = WriteLog()
        with cluster.client(leader, *rest) as wc, cluster.client(*rest) as c:
            log.put(c, "/cw5/seed", b"0")
            changes = Changes()
            with ConfigWatcher(wc, "/cw5/", on_change=changes, progress_interval_ms=200) as w:
                start = w.revision + 1
                writer = Writer(
                    c,
                    log,
                    count=300,
                    key=lambda i: f"/cw5/k{i % 9}",
                    value=lambda i: f"v{i}".encode(),
                ).start()
                wait_for("80 writes before the kill", lambda: writer.done >= 80, WRITER_WAIT_S)
                cluster.kill(leader)
                writer.join(WRITER_WAIT_S)
                final = assert_copy_is_current(w, c, "/cw5/")
                assert w.relists == 0, "nothing was compacted: resume, never relist"
                check_changes(changes, c, "/cw5/", start, log, final)


GATE_VALUE = b"g" * 16384  # 16 KiB: the node's per-stream queue (4 MiB) fills in ~256 revisions
SMALL_HISTORY = 50
STALL_WRITES_MAX = 3000


def _fell_behind(node: NodeProc) -> int:
    return node.log_text().count("watcher fell behind")


@pytest.mark.slow
def test_relists_after_its_history_is_compacted_and_reports_the_difference(
    tmp_path: Path,
) -> None:
    """Compacted while stuck behind a callback: it relists and reports the difference."""
    with running_cluster(tmp_path, limits={"history_revisions_max": SMALL_HISTORY}) as cluster:
        node = cluster.nodes[0]
        with cluster.client(node) as wc, cluster.client() as c:
            for i in range(20):
                c.put(f"/cw6/k{i}", f"v{i}")
            changes = Changes()
            gate = threading.Event()
            stuck = threading.Event()

            def slow(batch: list[Change]) -> None:
                changes(batch)
                if not gate.is_set():
                    stuck.set()
                    gate.wait(WRITER_WAIT_S)

            with ConfigWatcher(wc, "/cw6/", on_change=slow) as watcher:
                initial = {k: kv.value for k, kv in watcher.snapshot().items()}
                start_revision = watcher.revision
                c.put("/cw6/k0", "first")
                assert stuck.wait(WAIT_S), "the first change never reached on_change"
                try:
                    behind_before = _fell_behind(node)
                    written = 0
                    # Write until the node marks the stream slow (bounded), then past history.
                    while _fell_behind(node) == behind_before and written < STALL_WRITES_MAX:
                        c.put(f"/cw6/k{written % 20}", GATE_VALUE + str(written).encode())
                        written += 1
                    assert _fell_behind(node) > behind_before, f"not slow after {written} writes"
                    for i in range(SMALL_HISTORY * 2):
                        c.put(f"/cw6/k{i % 20}", f"late{i}")
                    for i in range(15, 20):
                        c.delete(f"/cw6/k{i}")
                    for i in range(20, 25):
                        c.put(f"/cw6/k{i}", f"new{i}")
                finally:
                    gate.set()
                final = assert_copy_is_current(watcher, c, "/cw6/")
                assert watcher.relists >= 1
                assert watcher.revision >= final > start_revision

        # Replaying every reported change over the initial copy gives the final state.
        replayed = dict(initial)
        for ch in changes.flat:
            if ch.type == "DELETE":
                assert ch.key in replayed, f"DELETE of {ch.key}, which the copy did not have"
                del replayed[ch.key]
            else:
                assert ch.value is not None
                replayed[ch.key] = ch.value
        assert replayed == {k: kv.value for k, kv in watcher.snapshot().items()}
        assert set(replayed) == {f"/cw6/k{i}" for i in (*range(15), *range(20, 25))}


def test_stops_when_its_client_is_closed(shared: Cluster) -> None:
    """Closing the client under a running watcher ends the watcher's thread (it
    had retried on the closed client forever, reporting an error each time)."""
    errors: list[Exception] = []
    c = shared.client()
    watcher = ConfigWatcher(c, "/cw-close/", on_error=errors.append).start()
    c.close()
    assert watcher._thread is not None
    watcher._thread.join(WAIT_S)
    assert not watcher._thread.is_alive()
    assert errors == []
