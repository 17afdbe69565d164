"""The MCP layer on a real 3-node cluster, through the SDK (McpClient) and the real CLI:
apply (one txn, one revision, seen by a watcher in one message), dry run, export round
trip, the optimistic-concurrency failure, history, rollback of a key and of /mcp/, and
the refusal to roll back to a compacted revision; plus authorization with auth on."""

from __future__ import annotations

import hashlib
import json
import os
import queue
import subprocess
import sys
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from mcpctl.client import Client, WatchBatch, WatchStream
from mcpctl.client.mcp import McpClient
from mcpctl.errors import Compacted, CompareFailed, InvalidArgument, PermissionDenied
from mcpctl.mcp import layout
from mcpctl.mcp.schema import parse_document
from tests.cluster import Cluster, running_cluster, wait_for

pytestmark = pytest.mark.cluster

SAMPLE = Path(__file__).resolve().parents[2] / "deploy" / "examples" / "mcp_config.yaml"
WAIT_S = 60.0  # generous: the machine is shared with other test runs
CLI_TIMEOUT_S = 60.0


@pytest.fixture(scope="module")
def shared(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    with running_cluster(tmp_path_factory.mktemp("mcp-apply")) as c:
        yield c


@pytest.fixture
def client(shared: Cluster) -> Iterator[Client]:
    """A client on a cluster whose /mcp/ is empty."""
    with shared.client(timeout=30.0) as c:
        c.delete("/mcp/", prefix=True)
        yield c


def sample_text() -> str:
    return SAMPLE.read_text()


def edited(change: Callable[[dict[str, Any]], None]) -> str:
    data = yaml.safe_load(sample_text())
    change(data)
    return yaml.safe_dump(data)


def swap_models(data: dict[str, Any]) -> None:
    """Drop llama-3-8b, add mistral, change gpt-4o's weight; routing falls back to any model."""
    data["models"] = [m for m in data["models"] if m["name"] != "llama-3-8b"]
    data["models"].append({"name": "mistral", "endpoint": "http://10.0.0.9:8000"})
    data["models"][0]["weight"] = 7
    data["routing"]["fallback"] = "any-healthy"
    del data["routing"]["fallback_model"]


def mcpctl(
    cluster: Cluster, *args: str, stdin: str | None = None
) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("MCP_", "MCPCTL_"))}
    return subprocess.run(
        [sys.executable, "-m", "mcpctl", "--endpoints", ",".join(cluster.endpoints), *args],
        capture_output=True,
        text=True,
        timeout=CLI_TIMEOUT_S,
        env=env,
        input=stdin,
    )


def live(c: Client) -> dict[str, tuple[bytes, int]]:
    return {kv.key: (kv.value, kv.mod_revision) for kv in c.get("/mcp/", prefix=True).kvs}


class Batches:
    """A watch stream read on a thread; ``next_events`` waits (bounded) for events."""

    def __init__(self, stream: WatchStream) -> None:
        self._stream = stream
        self._queue: queue.Queue[WatchBatch | BaseException] = queue.Queue()
        self._thread = threading.Thread(target=self._read, name="mcp-watch", daemon=True)
        self._thread.start()

    def _read(self) -> None:
        try:
            for batch in self._stream:
                self._queue.put(batch)
        except BaseException as e:
            self._queue.put(e)

    def next_events(self) -> WatchBatch:
        while True:
            item = self._queue.get(timeout=WAIT_S)
            if isinstance(item, BaseException):
                raise item
            if item.events:
                return item

    def close(self) -> None:
        self._stream.close()
        self._thread.join(WAIT_S)


# ------------------------------------------------------------------------- apply
def test_apply_writes_every_key_at_one_revision(client: Client) -> None:
    """apply: every key of the document exists, all with the one revision the apply made."""
    res = McpClient(client).apply(sample_text())
    assert res.revision == res.read_revision + 1 and not res.dry_run
    expected = layout.encode(parse_document(sample_text()))
    state = live(client)
    assert {k: v for k, (v, _) in state.items()} == expected
    assert {rev for _, rev in state.values()} == {res.revision}
    assert [ch.op for ch in res.changes] == ["add"] * len(expected)


def test_watcher_sees_a_whole_apply_in_one_message(client: Client) -> None:
    """A watcher on /mcp/ gets all of an apply's changes in ONE message at ONE revision."""
    mcp = McpClient(client)
    mcp.apply(sample_text())
    start = client.get("/mcp/", prefix=True, count_only=True).header.revision
    batches = Batches(client.watch("/mcp/", prefix=True, start_revision=start + 1))
    try:
        res = mcp.apply(edited(swap_models))
        batch = batches.next_events()
        assert {ev.kv.mod_revision for ev in batch.events} == {res.revision}
        assert {(ev.type, ev.kv.key) for ev in batch.events} == {
            ("PUT", "/mcp/models/gpt-4o"),
            ("DELETE", "/mcp/models/llama-3-8b"),
            ("PUT", "/mcp/models/mistral"),
            ("PUT", "/mcp/routing"),
        }
    finally:
        batches.close()


def test_dry_run_shows_the_diff_and_writes_nothing(shared: Cluster, client: Client) -> None:
    """apply --dry-run prints the per-key, per-field diff and leaves the store untouched."""
    McpClient(client).apply(sample_text())
    path = shared.root / "swapped.yaml"
    path.write_text(edited(swap_models))
    before = client.get("/mcp/", prefix=True, count_only=True).header.revision
    proc = mcpctl(shared, "apply", "-f", str(path), "--dry-run")
    assert proc.returncode == 0, proc.stderr
    assert client.get("/mcp/", prefix=True, count_only=True).header.revision == before
    lines = proc.stdout.splitlines()
    assert "~ /mcp/models/gpt-4o" in lines and "    weight: 3 -> 7" in lines
    assert "- /mcp/models/llama-3-8b" in lines and "+ /mcp/models/mistral" in lines
    assert '    endpoint: "http://10.0.0.9:8000"' in lines
    assert '    fallback: "model" -> "any-healthy"' in lines
    assert lines[-1] == (
        f"dry run: 4 changes against revision {before}; nothing written "
        f"(apply exactly this with --if-rev {before})"
    )
    proc = mcpctl(shared, "-w", "json", "apply", "-f", str(path), "--dry-run")
    obj = json.loads(proc.stdout)
    assert (obj["dry_run"], obj["read_revision"], obj["revision"]) == (True, before, 0)
    assert [(c["op"], c["key"]) for c in obj["changes"]] == [
        ("change", "/mcp/models/gpt-4o"),
        ("delete", "/mcp/models/llama-3-8b"),
        ("add", "/mcp/models/mistral"),
        ("change", "/mcp/routing"),
    ]


def test_cli_apply_then_apply_again_changes_nothing(shared: Cluster, client: Client) -> None:
    """mcpctl apply writes and says at which revision; the same file again: no changes."""
    proc = mcpctl(shared, "apply", "-f", "-", stdin=sample_text())
    assert proc.returncode == 0, proc.stderr
    revision = client.get("/mcp/server").kvs[0].mod_revision
    assert proc.stdout.splitlines()[-1] == f"applied: 10 changes at revision {revision}"
    proc = mcpctl(shared, "apply", "-f", str(SAMPLE))
    assert proc.returncode == 0 and proc.stdout == f"no changes (revision {revision})\n"


def test_export_round_trips(shared: Cluster, client: Client) -> None:
    """export after apply gives the applied document; applying the export changes nothing;
    export --rev N gives the document as it was then."""
    mcp = McpClient(client)
    first = mcp.apply(sample_text()).revision
    second = mcp.apply(edited(swap_models)).revision
    exported = mcp.export()
    assert exported.revision == second
    assert parse_document(exported.document) == parse_document(edited(swap_models))
    assert mcp.apply(exported.document).revision == 0
    proc = mcpctl(shared, "export", "--rev", str(first))
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.startswith(f"# MCP config exported from mcp-config at revision {first}\n")
    assert parse_document(proc.stdout) == parse_document(sample_text())
    proc = mcpctl(shared, "-w", "json", "export")
    assert json.loads(proc.stdout)["config"] == yaml.safe_load(exported.document)


def test_a_write_between_diff_and_apply_fails_clearly(shared: Cluster, client: Client) -> None:
    """dry run at R, a raw put under /mcp/, then apply --if-rev R: refused with a message
    that says why and what to do, and nothing of the apply is written."""
    mcp = McpClient(client)
    mcp.apply(sample_text())
    shown = mcp.apply(edited(swap_models), dry_run=True)
    raced = client.put("/mcp/logging", '{"level": "debug"}').revision
    with pytest.raises(CompareFailed) as info:
        mcp.apply(edited(swap_models), expected_revision=shown.read_revision)
    assert info.value.message == (
        f"the live MCP config changed since revision {shown.read_revision}; re-run apply"
    )
    assert client.get("/mcp/", prefix=True, count_only=True).header.revision == raced
    path = shared.root / "race.yaml"
    path.write_text(edited(swap_models))
    proc = mcpctl(shared, "apply", "-f", str(path), "--if-rev", str(shown.read_revision))
    assert proc.returncode == 1 and proc.stdout == ""
    assert proc.stderr == (
        f"mcpctl: compare failed: the live MCP config changed since revision "
        f"{shown.read_revision}; re-run apply\n"
    )
    assert "/mcp/models/mistral" not in live(client)


def test_a_delete_between_diff_and_apply_fails_too(client: Client) -> None:
    """A raw delete under /mcp/ (no newer mod_revision left behind) also fails the apply."""
    mcp = McpClient(client)
    mcp.apply(sample_text())
    shown = mcp.apply(edited(swap_models), dry_run=True)
    client.delete("/mcp/rate_limits/web")
    with pytest.raises(CompareFailed, match="changed since revision"):
        mcp.apply(edited(swap_models), expected_revision=shown.read_revision)


def test_an_invalid_document_is_refused_by_path(shared: Cluster, client: Client) -> None:
    """CLI and server both refuse an invalid document naming the path; nothing written,
    and the secret in it is never printed."""
    secret = "sk-live-DO-NOT-PRINT-0123456789"

    def breaks(data: dict[str, Any]) -> None:
        data["models"][2]["endpoint"] = "ftp://10.0.0.7/v1"
        data["models"][0]["token"] = secret

    text = edited(breaks)
    path = shared.root / "bad.yaml"
    path.write_text(text)
    before = client.get("/", prefix=True, count_only=True).header.revision
    proc = mcpctl(shared, "apply", "-f", str(path))
    assert proc.returncode == 1
    assert proc.stderr.splitlines() == [
        "mcpctl: invalid argument: invalid MCP document (2 problems):",
        "  models[0].token: inline secrets are not stored in the config store; "
        "use token_file or token_env",
        "  models[2].endpoint: not an http(s) URL",
    ]
    with pytest.raises(InvalidArgument) as info:  # the server checks too
        McpClient(client).apply(text)
    assert "models[2].endpoint: not an http(s) URL" in info.value.message
    assert secret not in info.value.message + proc.stdout + proc.stderr
    assert client.get("/", prefix=True, count_only=True).header.revision == before
    for node in shared.nodes:
        assert secret not in node.log_text()


# ---------------------------------------------------------------- history, rollback
def test_history_of_a_model_key(shared: Cluster, client: Client) -> None:
    """mcpctl history KEY: each change newest first, with revision, time, type and value."""
    mcp = McpClient(client)
    first = mcp.apply(sample_text()).revision
    second = mcp.apply(edited(swap_models)).revision
    proc = mcpctl(shared, "-w", "json", "history", "/mcp/models/gpt-4o")
    assert proc.returncode == 0, proc.stderr
    entries = json.loads(proc.stdout)["entries"]
    assert [(e["revision"], e["type"], e["version"]) for e in entries][:2] == [
        (second, "PUT", 2),
        (first, "PUT", 1),
    ]
    assert json.loads(entries[0]["value"])["weight"] == 7
    assert entries[0]["time"].endswith("Z") and entries[0]["ts_ms"] >= entries[1]["ts_ms"]
    proc = mcpctl(shared, "history", "/mcp/models/llama-3-8b")
    lines = proc.stdout.splitlines()
    assert lines[0].startswith(f"{second} ") and lines[0].endswith(" DELETE /mcp/models/llama-3-8b")
    assert lines[1].startswith(f"{first} ") and lines[1].endswith(" PUT /mcp/models/llama-3-8b")


def test_rollback_of_one_key(shared: Cluster, client: Client) -> None:
    """rollback KEY --to-rev N writes the value it had at N back, as a new revision."""
    mcp = McpClient(client)
    first = mcp.apply(sample_text()).revision
    mcp.apply(edited(swap_models))
    old = client.get("/mcp/models/gpt-4o", revision=first).kvs[0].value
    proc = mcpctl(shared, "rollback", "/mcp/models/gpt-4o", "--to-rev", str(first))
    assert proc.returncode == 0, proc.stderr
    now = client.get("/mcp/models/gpt-4o").kvs[0]
    assert now.value == old and now.version == 3
    assert proc.stdout.splitlines() == [
        "~ /mcp/models/gpt-4o",
        "    weight: 7 -> 3",
        f"rolled back: 1 change at revision {now.mod_revision}",
    ]
    res = mcp.rollback("/mcp/models/mistral", to_revision=first)  # did not exist then
    assert [(c.op, c.key) for c in res.changes] == [("delete", "/mcp/models/mistral")]
    assert not client.get("/mcp/models/mistral").kvs


def test_rollback_of_the_whole_config(shared: Cluster, client: Client) -> None:
    """rollback --prefix /mcp/ --to-rev N: /mcp/ is what it was at N again, at ONE new
    revision, and export gives the document applied at N."""
    mcp = McpClient(client)
    first = mcp.apply(sample_text()).revision
    mcp.apply(edited(swap_models))
    client.put("/mcp/limits/rps", "100")  # a stray key written by hand
    proc = mcpctl(shared, "rollback", "--prefix", "/mcp/", "--to-rev", str(first))
    assert proc.returncode == 0, proc.stderr
    state = live(client)
    assert {k: v for k, (v, _) in state.items()} == layout.encode(parse_document(sample_text()))
    rolled = int(proc.stdout.splitlines()[-1].rsplit(" ", 1)[1])
    rewritten = {key for key, (_, rev) in state.items() if rev == rolled}
    assert rewritten == {"/mcp/models/gpt-4o", "/mcp/models/llama-3-8b", "/mcp/routing"}
    assert client.get("/mcp/limits/rps").kvs == []
    assert parse_document(McpClient(client).export().document) == parse_document(sample_text())
    history = McpClient(client).history("/mcp/", prefix=True, limit=10)
    assert {e.revision for e in history.entries[:5]} == {rolled}


def test_rollback_to_a_compacted_revision_is_refused(shared: Cluster, client: Client) -> None:
    """A revision older than history: FAILED_PRECONDITION with the oldest one available;
    nothing is written."""
    mcp = McpClient(client)
    first = mcp.apply(sample_text()).revision
    second = mcp.apply(edited(swap_models)).revision
    client.compact(second)
    with pytest.raises(Compacted) as info:
        mcp.rollback("/mcp/", prefix=True, to_revision=first)
    assert info.value.compact_revision == second
    proc = mcpctl(shared, "rollback", "--prefix", "/mcp/", "--to-rev", str(first))
    assert proc.returncode == 1
    assert proc.stderr == (
        f"mcpctl: compacted: cannot roll back to revision {first}: it has been compacted; "
        f"the oldest revision still available is {second}\n"
    )
    assert client.get("/", prefix=True, count_only=True).header.revision == second


def test_cli_usage_errors(shared: Cluster) -> None:
    """Bad flag combinations exit 2 with one line, before talking to the cluster."""
    for args in (
        ("rollback", "--to-rev", "3"),
        ("rollback", "/mcp/a", "--prefix", "/mcp/", "--to-rev", "3"),
        ("rollback", "/mcp/a", "--to-rev", "0"),
        ("apply", "-f", str(shared.root / "missing.yaml")),
        ("export", "--rev", "-1"),
    ):
        proc = mcpctl(shared, *args)
        assert proc.returncode == 2, (args, proc.stderr)
        assert len(proc.stderr.splitlines()) == 1 and proc.stdout == ""


# ------------------------------------------------------------------------ with auth
def _sha(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def test_config_calls_need_the_permissions_of_their_kv_writes(tmp_path: Path) -> None:
    """With auth on: a writer on /mcp/ may apply and roll back; a reader may only dry-run
    and export; a writer elsewhere may not even read the config."""
    tokens = {"admin": "admin-token-0001", "mcp": "mcp-writer-0002", "ro": "read-only-0003"}
    auth = {
        "enabled": True,
        "roles": [
            {"name": "mcp-writer", "permissions": [{"prefix": "/mcp/", "access": "write"}]},
            {"name": "other", "permissions": [{"prefix": "/other/", "access": "write"}]},
        ],
        "tokens": [
            {"name": "admin", "role": "admin", "sha256": _sha(tokens["admin"])},
            {"name": "ops", "role": "mcp-writer", "sha256": _sha(tokens["mcp"])},
            {"name": "viewer", "role": "readonly", "sha256": _sha(tokens["ro"])},
            {"name": "app", "role": "other", "sha256": _sha("other-app-0004")},
        ],
    }
    cluster = Cluster(tmp_path, extra_config={"auth": auth})
    try:
        for node in cluster.nodes:
            cluster.start(node)

        def ready() -> bool:
            with Client(cluster.endpoints, token=tokens["admin"], timeout=2) as c:
                c.get("/", prefix=True, count_only=True)
            return True

        wait_for("the cluster to serve", ready)
        with Client(cluster.endpoints, token=tokens["mcp"], timeout=30) as c:
            first = McpClient(c).apply(sample_text()).revision
            McpClient(c).apply(edited(swap_models))
            assert McpClient(c).rollback("/mcp/", prefix=True, to_revision=first).revision
        with Client(cluster.endpoints, token=tokens["ro"], timeout=30) as c:
            mcp = McpClient(c)
            assert mcp.apply(edited(swap_models), dry_run=True).changes
            assert parse_document(mcp.export().document) == parse_document(sample_text())
            with pytest.raises(PermissionDenied, match="viewer may not write under '/mcp/'"):
                mcp.apply(edited(swap_models))
            with pytest.raises(PermissionDenied, match="viewer may not write"):
                mcp.rollback("/mcp/routing", to_revision=first)
        other = Client(cluster.endpoints, token="other-app-0004", timeout=30)
        with other, pytest.raises(PermissionDenied, match="app may not read under '/mcp/'"):
            McpClient(other).export()
    finally:
        cluster.close()
