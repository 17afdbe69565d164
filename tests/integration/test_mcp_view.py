"""McpConfigView on a real 3-node cluster: it always holds the current valid, typed MCP
config, reports each apply as models added/removed/changed (one update per apply), and
when an invalid config is written behind its back (raw put) it reports the problem,
by key and without values, and keeps the last valid config."""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
import yaml

from mcpctl.client import Client
from mcpctl.client.mcp import McpClient
from mcpctl.client.view import ConfigUpdate, InvalidConfig, McpConfigView
from mcpctl.mcp.schema import parse_document
from tests.cluster import Cluster, running_cluster

pytestmark = pytest.mark.cluster

SAMPLE = Path(__file__).resolve().parents[2] / "deploy" / "examples" / "mcp_config.yaml"
WAIT_S = 60.0  # generous: the machine is shared with other test runs


@pytest.fixture(scope="module")
def shared(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    with running_cluster(tmp_path_factory.mktemp("mcp-view")) as c:
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
    """Drop llama-3-8b, add mistral, change gpt-4o; routing falls back to any model."""
    data["models"] = [m for m in data["models"] if m["name"] != "llama-3-8b"]
    data["models"].append({"name": "mistral", "endpoint": "http://10.0.0.9:8000"})
    data["models"][0]["weight"] = 7
    data["routing"]["fallback"] = "any-healthy"
    del data["routing"]["fallback_model"]


class Recorder:
    """Every on_update / on_invalid call, in order (thread-safe)."""

    def __init__(self) -> None:
        self.updates: list[ConfigUpdate] = []
        self.invalid: list[InvalidConfig] = []
        self._lock = threading.Lock()

    def on_update(self, update: ConfigUpdate) -> None:
        with self._lock:
            self.updates.append(update)

    def on_invalid(self, invalid: InvalidConfig) -> None:
        with self._lock:
            self.invalid.append(invalid)

    def counts(self) -> tuple[int, int]:
        with self._lock:
            return len(self.updates), len(self.invalid)


@contextmanager
def viewing(shared: Cluster, rec: Recorder) -> Iterator[McpConfigView]:
    """A started view through one member (not the one the writer usually talks to)."""
    with shared.client(shared.nodes[2], timeout=30.0) as client:
        view = McpConfigView(client, on_update=rec.on_update, on_invalid=rec.on_invalid)
        with view:
            yield view


def wait(view: McpConfigView, revision: int) -> None:
    assert view.wait_for_revision(revision, WAIT_S), f"view stuck before revision {revision}"


def test_view_starts_with_the_current_config(shared: Cluster, client: Client) -> None:
    """start() evaluates /mcp/: config is the applied document, reported once as all added."""
    applied = McpClient(client).apply(sample_text()).revision
    rec = Recorder()
    with viewing(shared, rec) as view:
        assert view.config == parse_document(sample_text())
        assert view.revision == applied and view.invalid is None
        assert set(view.models) == {"claude-sonnet", "gpt-4o", "llama-3-8b"}
        [first] = rec.updates
        assert first.previous is None and first.revision == applied
        assert first.added == ("claude-sonnet", "gpt-4o", "llama-3-8b")
        assert first.removed == () and first.changed == ()
        assert first.sections == ("server", "routing", "auth", "rate_limits", "logging")


def test_models_added_removed_and_changed_are_reported(shared: Cluster, client: Client) -> None:
    """One apply -> one update at its revision, naming exactly what changed."""
    mcp = McpClient(client)
    mcp.apply(sample_text())
    rec = Recorder()
    with viewing(shared, rec) as view:
        res = mcp.apply(edited(swap_models))
        wait(view, res.revision)
        assert rec.counts() == (2, 0)  # the initial config, then this apply
        update = rec.updates[-1]
        assert update.revision == res.revision == view.revision
        assert (update.added, update.removed, update.changed) == (
            ("mistral",),
            ("llama-3-8b",),
            ("gpt-4o",),
        )
        assert update.sections == ("routing",)
        assert update.previous == parse_document(sample_text())
        assert update.config == view.config == parse_document(edited(swap_models))
        assert view.models["gpt-4o"].weight == 7


def test_a_raw_invalid_put_is_reported_and_the_last_valid_config_kept(
    shared: Cluster, client: Client, caplog: pytest.LogCaptureFixture
) -> None:
    """A raw put that breaks the schema: on_invalid names the key and field (never the
    value, even a secret), config stays the last valid one; fixing it clears the problem."""
    caplog.set_level(logging.WARNING, logger="mcpctl.client.view")
    secret = "sk-live-VIEW-SECRET-98765"
    mcp = McpClient(client)
    valid = mcp.apply(sample_text()).revision
    rec = Recorder()
    with viewing(shared, rec) as view:
        bad = b'{"endpoint": "ftp://nowhere", "token": "' + secret.encode() + b'"}'
        broken = client.put("/mcp/models/gpt-4o", bad).revision
        wait(view, broken)
        assert rec.counts() == (1, 1)
        [invalid] = rec.invalid
        assert invalid.revision == broken and invalid.kept_revision == valid
        assert set(invalid.problems) == {
            "/mcp/models/gpt-4o: endpoint: not an http(s) URL",
            "/mcp/models/gpt-4o: token: inline secrets are not stored in the config store; "
            "use token_file or token_env",
        }
        assert view.config == parse_document(sample_text()) and view.revision == valid
        assert view.invalid == invalid
        logged = "\n".join(r.getMessage() for r in caplog.records)
        assert f"revision {broken} is invalid; keeping revision {valid}" in logged
        assert secret not in logged

        stray = client.put("/mcp/limits/rps", "100").revision  # still invalid: one more report
        wait(view, stray)
        assert rec.counts() == (1, 2)
        assert "/mcp/limits/rps: not part of the MCP key layout" in rec.invalid[-1].problems[-1]

        client.delete("/mcp/limits/rps")
        fixed = client.put("/mcp/models/gpt-4o", '{"endpoint": "https://new.example/v1"}')
        wait(view, fixed.revision)
        assert view.invalid is None and view.revision == fixed.revision
        update = rec.updates[-1]
        assert update.changed == ("gpt-4o",) and update.previous == parse_document(sample_text())
        assert view.models["gpt-4o"].endpoint == "https://new.example/v1"


def test_an_empty_prefix_is_no_config_until_the_first_apply(
    shared: Cluster, client: Client
) -> None:
    """No keys under /mcp/: config None and one "no MCP config" report; the first apply is
    then the first update (previous None)."""
    rec = Recorder()
    with viewing(shared, rec) as view:
        assert view.config is None and view.revision == 0
        assert [i.problems for i in rec.invalid] == [("no MCP config under /mcp/",)]
        res = McpClient(client).apply(sample_text())
        wait(view, res.revision)
        [update] = rec.updates
        assert update.previous is None and update.revision == res.revision
        assert view.config == parse_document(sample_text())


def test_deleting_the_whole_config_keeps_the_last_valid_one(
    shared: Cluster, client: Client
) -> None:
    """A raw delete of /mcp/ is reported; services keep running on the last valid config."""
    applied = McpClient(client).apply(sample_text()).revision
    rec = Recorder()
    with viewing(shared, rec) as view:
        gone = client.delete("/mcp/", prefix=True).header.revision
        wait(view, gone)
        assert rec.invalid[-1].problems == ("no MCP config under /mcp/",)
        assert rec.invalid[-1].kept_revision == applied
        assert view.config == parse_document(sample_text())
