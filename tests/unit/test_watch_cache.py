"""The last-good cache file (mcpctl/client/cache.py) and how a ConfigWatcher
uses it when no endpoint answers.

The cluster is "down" here as in life: real gRPC clients pointed at ports where
nothing listens (connection refused). The cold start from a good file, and
every kind of bad file (corrupt, foreign format, other prefix, other cluster,
oversized) which must be ignored with a warning, never crash the service.
tests/integration/test_watch_cache.py runs the whole story on a real cluster.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from mcpctl import limits
from mcpctl.client import Client, KeyValue, cache
from mcpctl.client.view import McpConfigView
from mcpctl.client.watcher import ConfigWatcher
from mcpctl.errors import Unavailable
from tests.cluster import free_ports

PREFIX = "/svc/"


@pytest.fixture
def dead() -> Iterator[Client]:
    """A client whose every endpoint refuses connections."""
    with Client([f"127.0.0.1:{p}" for p in free_ports(3)], timeout=2.0) as c:
        yield c


def _copy(client: Client, *, prefix: str = PREFIX, age_s: float = 30.0) -> cache.CachedCopy:
    return cache.CachedCopy(
        prefix=prefix,
        revision=7,
        saved_at=time.time() - age_s,
        cluster_id=0xABC,
        endpoints=tuple(client.endpoints),
        kvs=(
            KeyValue(f"{prefix}a", b"1", 2, 2, 1),
            KeyValue(f"{prefix}b", b"\x00\xff", 3, 7, 2, lease=5),
        ),
    )


def test_round_trip_and_atomic_write(tmp_path: Path, dead: Client) -> None:
    path = cache.cache_path(tmp_path, PREFIX)
    copy = _copy(dead)
    assert cache.save(path, copy)
    assert cache.load(path, PREFIX, dead.endpoints) == copy
    assert [p.name for p in tmp_path.iterdir()] == [path.name]  # no temp file left
    assert path.stat().st_mode & 0o777 == 0o600


def test_cold_start_from_the_cache_is_stale(
    tmp_path: Path, dead: Client, caplog: pytest.LogCaptureFixture
) -> None:
    cache.save(cache.cache_path(tmp_path, PREFIX), _copy(dead, age_s=30.0))
    seen: list[list[str]] = []
    caplog.set_level(logging.WARNING)
    w = ConfigWatcher(
        dead,
        PREFIX,
        cache_dir=tmp_path,
        initial_changes=True,
        on_change=lambda chs: seen.append([c.key for c in chs]),
    ).start()
    try:
        assert w.stale
        assert w.revision == 7
        assert w.get(f"{PREFIX}b") == b"\x00\xff"
        assert seen == [[f"{PREFIX}a", f"{PREFIX}b"]]
        assert 29.0 <= w.staleness_s < 120.0
        assert "starts STALE from the cache (revision 7" in caplog.text
    finally:
        w.stop()
    # A stale copy is never written back over the file it came from.
    kept = cache.load(cache.cache_path(tmp_path, PREFIX), PREFIX, dead.endpoints)
    assert kept is not None and time.time() - kept.saved_at >= 29.0


def test_require_fresh_refuses_the_cache(tmp_path: Path, dead: Client) -> None:
    cache.save(cache.cache_path(tmp_path, PREFIX), _copy(dead))
    with pytest.raises(Unavailable):
        ConfigWatcher(dead, PREFIX, cache_dir=tmp_path, require_fresh=True).start()


def test_no_cache_dir_fails_as_before(dead: Client) -> None:
    with pytest.raises(Unavailable):
        ConfigWatcher(dead, PREFIX).start()


def _bad_files(client: Client) -> dict[str, bytes]:
    good = json.loads(cache.encode(_copy(client)))
    other_prefix = cache.encode(_copy(client, prefix="/other/"))
    other_cluster = dict(good, endpoints=["10.0.0.1:2379"])
    bad_value = dict(good, kvs=[dict(good["kvs"][0], value="not base64!")])
    outside = dict(good, kvs=[dict(good["kvs"][0], key="/elsewhere")])
    return {
        "not JSON": b"\x00garbage{",
        "not a mcpctl-watch-cache/1 file": json.dumps({"format": "etcd/9"}).encode(),
        "not a mcpctl-watch-cache/1 file (format: 'list')": b"[1, 2]",
        "it holds prefix '/other/'": other_prefix,
        "another cluster": json.dumps(other_cluster).encode(),
        "malformed (Error": json.dumps(bad_value).encode(),
        "malformed (a negative revision or a key outside": json.dumps(outside).encode(),
        "malformed (KeyError": json.dumps({"format": cache.FORMAT}).encode(),
        "malformed (TypeError": json.dumps(dict(good, revision="7")).encode(),
        "over CLIENT_CACHE_BYTES_MAX": b" " * (limits.CLIENT_CACHE_BYTES_MAX + 1),
    }


def test_unusable_files_are_ignored_with_a_warning(
    tmp_path: Path, dead: Client, caplog: pytest.LogCaptureFixture
) -> None:
    path = cache.cache_path(tmp_path, PREFIX)
    caplog.set_level(logging.WARNING)
    for why, data in _bad_files(dead).items():
        caplog.clear()
        path.write_bytes(data)
        # The service does not crash: it fails as it would with no cache at all.
        with pytest.raises(Unavailable):
            ConfigWatcher(dead, PREFIX, cache_dir=tmp_path).start()
        assert f"ignoring the cache file {path}: " in caplog.text, why
        assert why in caplog.text, (why, caplog.text)


def test_oversized_copy_is_not_written(
    tmp_path: Path, dead: Client, caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = cache.cache_path(tmp_path, PREFIX)
    first = _copy(dead)
    assert cache.save(path, first)
    monkeypatch.setattr(limits, "CLIENT_CACHE_BYTES_MAX", 100)
    caplog.set_level(logging.WARNING)
    assert not cache.save(path, _copy(dead, age_s=1.0))
    assert "over CLIENT_CACHE_BYTES_MAX (100); the previous cache file stays" in caplog.text
    monkeypatch.undo()
    assert cache.load(path, PREFIX, dead.endpoints) == first


def test_view_starts_from_a_cached_config(tmp_path: Path, dead: Client) -> None:
    import yaml

    from mcpctl.mcp import layout
    from mcpctl.mcp.schema import McpConfig

    doc = yaml.safe_load(Path("deploy/examples/mcp_config.yaml").read_text())
    keys = layout.encode(McpConfig.model_validate(doc))
    # A live instance under /mcp/instances/ is not part of the desired config.
    keys["/mcp/instances/llama-3-8b/i-1"] = b'{"address": "10.0.0.7:8000"}'
    kvs = tuple(KeyValue(k, v, 3, 3 + i, 1) for i, (k, v) in enumerate(sorted(keys.items())))
    copy = cache.CachedCopy(layout.ROOT, 40, time.time() - 5, 1, tuple(dead.endpoints), kvs)
    cache.save(cache.cache_path(tmp_path, layout.ROOT), copy)
    view = McpConfigView(dead, cache_dir=tmp_path).start()
    try:
        assert view.stale and view.staleness_s >= 4.0
        assert sorted(view.models) == sorted(m["name"] for m in doc["models"])
        assert view.invalid is None
    finally:
        view.stop()
