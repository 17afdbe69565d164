"""The last-good cache on a real 3-node cluster: a service starts during a
control-plane outage and converges when the cluster is back.

A ConfigWatcher (and an McpConfigView) fill their cache while the cluster is
up; every member is stopped; a new watcher started then begins from the
cache, reports stale (property, log line, staleness age) and has the cached
values; ``require_fresh`` refuses to start; the members are started again,
the value changed meanwhile is reported as a change, the watcher turns fresh,
follows later writes and rewrites the cache at the new revision. A corrupt
cache file is ignored with a warning while the cluster is up.
"""

from __future__ import annotations

import logging
import threading
from pathlib import Path

import pytest
import yaml

from mcpctl.client import cache
from mcpctl.client.mcp import McpClient
from mcpctl.client.view import McpConfigView
from mcpctl.client.watcher import Change, ConfigWatcher
from mcpctl.errors import Unavailable
from tests.cluster import Cluster, wait_for

pytestmark = pytest.mark.cluster

PREFIX = "/svc/"
WAIT_S = 60.0  # generous: the machine is shared with other test runs


class Seen:
    def __init__(self) -> None:
        self.changes: list[Change] = []
        self._lock = threading.Lock()

    def __call__(self, changes: list[Change]) -> None:
        with self._lock:
            self.changes.extend(changes)

    def changed_keys(self) -> list[str]:
        with self._lock:
            return [c.key for c in self.changes]


def _stop_all(cluster: Cluster) -> None:
    for node in cluster.nodes:
        cluster.stop(node)


def test_cold_start_from_cache_then_converges(
    cluster: Cluster, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    cache_dir = tmp_path / "cache"
    text = Path("deploy/examples/mcp_config.yaml").read_text()
    doc = yaml.safe_load(text)
    with cluster.client() as c:
        c.put(f"{PREFIX}a", b"1")
        c.put(f"{PREFIX}b", b"2")
        McpClient(c).apply(text)
        with ConfigWatcher(c, PREFIX, cache_dir=cache_dir) as w:
            rev = w.revision
        with McpConfigView(c, cache_dir=cache_dir) as view:
            assert view.config is not None and not view.stale
    saved = cache.load(cache.cache_path(cache_dir, PREFIX), PREFIX, cluster.endpoints)
    assert saved is not None and saved.revision == rev

    _stop_all(cluster)
    caplog.set_level(logging.WARNING)
    client = cluster.client(timeout=3.0)
    with pytest.raises(Unavailable):
        ConfigWatcher(client, PREFIX, cache_dir=cache_dir, require_fresh=True).start()
    seen = Seen()
    w = ConfigWatcher(client, PREFIX, cache_dir=cache_dir, on_change=seen).start()
    view = McpConfigView(client, cache_dir=cache_dir).start()
    try:
        assert w.stale and w.stale_since is not None and w.revision == rev
        assert w.get(f"{PREFIX}a") == b"1" and w.get(f"{PREFIX}b") == b"2"
        assert "starts STALE from the cache" in caplog.text
        assert view.stale and view.staleness_s > 0.0
        assert sorted(view.models) == sorted(m["name"] for m in doc["models"])

        cluster.start_all()
        with cluster.client() as c:
            changed = c.put(f"{PREFIX}a", b"changed while it was stale").revision
            wait_for("the watcher to turn fresh", lambda: not w.stale, WAIT_S)
            wait_for("the view to turn fresh", lambda: not view.stale, WAIT_S)
            assert view.staleness_s == 0.0
            # Fresh may come from a read taken just before the put: then the put
            # arrives on the watch that follows.
            assert w.wait_for_revision(changed, WAIT_S)
            assert w.get(f"{PREFIX}a") == b"changed while it was stale"
            assert f"{PREFIX}a" in seen.changed_keys()
            assert "is fresh again at revision" in caplog.text
            # It follows the cluster from there, and caches what it now holds.
            latest = c.put(f"{PREFIX}c", b"3").revision
            assert w.wait_for_revision(latest, WAIT_S)
            assert w.get(f"{PREFIX}c") == b"3"
    finally:
        w.stop()
        view.stop()
        client.close()
    saved = cache.load(cache.cache_path(cache_dir, PREFIX), PREFIX, cluster.endpoints)
    assert saved is not None and saved.revision >= latest
    assert {kv.key: kv.value for kv in saved.kvs}[f"{PREFIX}c"] == b"3"


def test_corrupt_cache_file_is_ignored(
    cluster: Cluster, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    path = cache.cache_path(tmp_path, PREFIX)
    path.write_bytes(b'{"format": "mcpctl-watch-cache/1", "kvs": [tru')
    caplog.set_level(logging.WARNING)
    with cluster.client() as c:
        c.put(f"{PREFIX}k", b"v")
        with ConfigWatcher(c, PREFIX, cache_dir=tmp_path) as w:
            assert not w.stale and w.get(f"{PREFIX}k") == b"v"
        # Up: the corrupt file is simply replaced by a good one.
        assert cache.load(path, PREFIX, c.endpoints) is not None
        path.write_bytes(b"\x00\x01 not a cache")
        _stop_all(cluster)
        with pytest.raises(Unavailable):
            ConfigWatcher(c, PREFIX, cache_dir=tmp_path).start()
    assert f"ignoring the cache file {path}: not JSON" in caplog.text
