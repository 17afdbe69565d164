"""``ConfigWatcher``: a live, consistent copy of every key under a prefix.

How it stays correct:

1. ``start()`` reads the prefix at one revision R (a linearizable read), then
   watches from R+1: no change between the read and the watch is missed.
2. Each watch message is applied to the copy, then the callbacks run with
   that message's changes (all changes of one revision — one txn — arrive
   together, so a service never sees half an update).
3. When a member fails, the stream resumes on another member from the last
   revision applied (``WatchStream``): no gap, no duplicate.
4. When the history it needs is compacted, it reads the prefix again and
   reports the difference as changes (``relists`` counts these).
5. Every ``check_interval_s`` it compares its copy with a read of the prefix
   at a bookmark revision; a mismatch is logged and repaired by a relist.

The last-good cache (``cache_dir``, ``mcpctl.client.cache``): the copy is
saved to disk (atomically, at most every ``CLIENT_CACHE_SAVE_INTERVAL_S``,
and at ``stop()``). When ``start()`` finds every endpoint unreachable, it
starts from that file instead of failing: ``stale`` is True, a warning says
how old the copy is, and the thread keeps trying a normal read; the first
that succeeds replaces the copy (the difference is reported as changes, like
a relist), ``stale`` turns False and the watch follows from there. With
``require_fresh=True`` the cache is never used to start (``start()`` raises).

Threading model: one background thread per watcher runs the stream and
calls ``on_change`` (and ``on_error``) on that thread, in revision order;
a slow callback delays later changes, never reorders them. ``snapshot()``,
``get()``, ``revision`` and ``wait_for_revision()`` may be called from any
thread. Exceptions raised by callbacks are logged and do not stop the watcher.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from collections.abc import Callable

from mcpctl import limits
from mcpctl.client import cache
from mcpctl.client._client import Client
from mcpctl.client._prefix import (
    Change,
    apply_batch,
    copy_differs,
    initial_changes,
    relist_changes,
)
from mcpctl.client._rules import ClientClosed
from mcpctl.client._values import GetResult, KeyValue, WatchBatch
from mcpctl.client._watch import WatchStream
from mcpctl.errors import Compacted, DeadlineExceeded, McpError, Unavailable

__all__ = ["Change", "ConfigWatcher"]

log = logging.getLogger("mcpctl.client.watcher")

# Pause between attempts when the cluster cannot be reached at all.
RETRY_PAUSE_S = 1.0


class ConfigWatcher:
    def __init__(
        self,
        client: Client,
        prefix: str,
        *,
        on_change: Callable[[list[Change]], None] | None = None,
        on_error: Callable[[Exception], None] | None = None,
        check_interval_s: float = limits.CONFIG_WATCHER_CHECK_S_DEFAULT,
        progress_interval_ms: int = 1000,
        initial_changes: bool = False,
        cache_dir: str | os.PathLike[str] | None = None,
        require_fresh: bool = False,
        cache_when: Callable[[], bool] | None = None,
    ) -> None:
        """``cache_dir``: keep the last-good copy there and start from it when the
        cluster is unreachable (see the module docstring); ``require_fresh``:
        never start from it; ``cache_when``: save only when it returns True
        (``McpConfigView`` saves only copies that are a valid config)."""
        self._client = client
        self.prefix = prefix
        self._on_change = on_change
        self._on_error = on_error
        self._check_interval_s = check_interval_s
        self._progress_interval_ms = progress_interval_ms
        self._initial_changes = initial_changes
        self._data: dict[str, KeyValue] = {}
        self._revision = 0
        self._lock = threading.Condition()
        self._stop = threading.Event()
        self._stream: WatchStream | None = None
        self._thread: threading.Thread | None = None
        self._last_check = time.monotonic()
        self.relists = 0
        self.repairs = 0
        self._cache_path = cache.cache_path(cache_dir, prefix) if cache_dir is not None else None
        self._require_fresh = require_fresh
        self._cache_when = cache_when
        self._cluster_id = 0
        self._stale_since: float | None = None  # wall time the cached copy in use was saved
        self._unsaved = False
        self._last_save = 0.0
        self._save_interval_s = limits.CLIENT_CACHE_SAVE_INTERVAL_S

    # -- lifecycle -----------------------------------------------------------
    def start(self) -> ConfigWatcher:
        """Read the prefix (raises if the cluster cannot answer), then follow it.

        With ``initial_changes``, ``on_change`` first gets one PUT per existing
        key (on the calling thread, before any later change).
        """
        try:
            res = self._client.get(self.prefix, prefix=True)
        except (Unavailable, DeadlineExceeded) as e:
            kvs = self._start_from_cache(e)
        else:
            kvs = res.kvs
            with self._lock:
                self._data = {kv.key: kv for kv in res.kvs}
                self._revision = res.header.revision
                self._cluster_id = res.header.cluster_id
                self._lock.notify_all()
        if self._initial_changes and kvs:
            self._notify(initial_changes(kvs))
        self._save(force=True)
        self._thread = threading.Thread(target=self._run, name=f"watch {self.prefix}", daemon=True)
        self._thread.start()
        return self

    def stop(self, timeout_s: float = 5.0) -> None:
        self._stop.set()
        stream = self._stream
        if stream is not None:
            stream.close()
        if self._thread is not None:
            self._thread.join(timeout_s)
            if not self._thread.is_alive():
                self._save(force=True)

    def __enter__(self) -> ConfigWatcher:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # -- the view --------------------------------------------------------------
    @property
    def revision(self) -> int:
        """Every change up to this revision is in the copy."""
        with self._lock:
            return self._revision

    def get(self, key: str) -> bytes | None:
        with self._lock:
            kv = self._data.get(key)
            return kv.value if kv is not None else None

    def snapshot(self) -> dict[str, KeyValue]:
        with self._lock:
            return dict(self._data)

    @property
    def stale(self) -> bool:
        """True while the copy comes from the cache (the cluster has not answered yet)."""
        with self._lock:
            return self._stale_since is not None

    @property
    def stale_since(self) -> float | None:
        """When the cached copy in use was saved (Unix time); None when fresh."""
        with self._lock:
            return self._stale_since

    @property
    def staleness_s(self) -> float:
        """How old the cached copy in use is, in seconds; 0.0 when fresh."""
        since = self.stale_since
        return 0.0 if since is None else max(0.0, time.time() - since)

    def wait_for_revision(self, revision: int, timeout_s: float) -> bool:
        """Block until the copy reflects ``revision`` (True) or time runs out."""
        with self._lock:
            return self._lock.wait_for(lambda: self._revision >= revision, timeout_s)

    # -- the thread --------------------------------------------------------------
    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                if self.stale:
                    self._relist()
                    continue
                self._follow()
            except Compacted:
                self._relist()
            except ClientClosed:
                log.warning("config watcher on %s stops: its client was closed", self.prefix)
                return
            except McpError as e:
                self._report(e)
                self._stop.wait(RETRY_PAUSE_S)
            except Exception as e:  # a bug in a callback path; keep going
                log.exception("config watcher failed")
                self._report(e)
                self._stop.wait(RETRY_PAUSE_S)

    def _follow(self) -> None:
        stream = self._client.watch(
            self.prefix,
            prefix=True,
            start_revision=self.revision + 1,
            progress_notify=True,
            progress_interval_ms=self._progress_interval_ms,
        )
        self._stream = stream
        if self._stop.is_set():
            return
        with stream:
            for batch in stream:
                if batch.events:
                    self._apply(batch)
                elif batch.progress:
                    with self._lock:
                        self._revision = max(self._revision, batch.revision)
                        self._lock.notify_all()
                    self._maybe_check(batch.revision)
                    self._save()

    def _apply(self, batch: WatchBatch) -> None:
        with self._lock:
            changes = apply_batch(self._data, batch)
            self._revision = max(self._revision, batch.revision)
            self._lock.notify_all()
        self._notify(changes)
        self._unsaved = True
        self._save()

    def _relist(self) -> None:
        """Read the prefix again and report the difference as changes."""
        try:
            res = self._client.get(self.prefix, prefix=True)
        except McpError as e:
            self._report(e)
            self._stop.wait(RETRY_PAUSE_S)
            return
        self.relists += 1
        fresh = {kv.key: kv for kv in res.kvs}
        revision = res.header.revision
        self._converged(res)
        with self._lock:
            changes = relist_changes(self._data, fresh, revision)
            self._data = fresh
            self._revision = revision
            self._lock.notify_all()
        log.info("config watcher relisted %s at revision %d", self.prefix, revision)
        if changes:
            self._notify(changes)
        self._unsaved = True
        self._save(force=True)

    def _maybe_check(self, bookmark: int) -> None:
        now = time.monotonic()
        if now - self._last_check < self._check_interval_s:
            return
        self._last_check = now
        try:
            res = self._client.get(self.prefix, prefix=True, revision=bookmark)
        except McpError:
            return  # compacted or unavailable: the next check tries again
        with self._lock:
            if self._revision != bookmark:
                return  # moved on meanwhile; compare next time
            differs = copy_differs(self._data, res.kvs)
        if differs:
            self.repairs += 1
            log.error(
                "config watcher copy of %s differs at revision %d; relisting", self.prefix, bookmark
            )
            self._relist()

    # -- the cache -------------------------------------------------------------
    def _start_from_cache(self, error: McpError) -> list[KeyValue]:
        """Load the cached copy after ``error`` (every endpoint unreachable);
        raise ``error`` when there is none or the caller wants a fresh one."""
        if self._cache_path is None or self._require_fresh:
            raise error
        copy = cache.load(self._cache_path, self.prefix, self._client.endpoints)
        if copy is None:
            log.warning("config watcher for %s: no usable cache %s", self.prefix, self._cache_path)
            raise error
        with self._lock:
            self._data = {kv.key: kv for kv in copy.kvs}
            self._revision = copy.revision
            self._cluster_id = copy.cluster_id
            self._stale_since = copy.saved_at
            self._lock.notify_all()
        log.warning(
            "config watcher for %s starts STALE from the cache (revision %d, saved %.0f s ago): "
            "the cluster is unreachable (%s); it converges when the cluster answers",
            self.prefix,
            copy.revision,
            max(0.0, time.time() - copy.saved_at),
            error.message,
        )
        return list(copy.kvs)

    def _converged(self, res: GetResult) -> None:
        """A read of the cluster succeeded: the copy is no longer the cached one."""
        with self._lock:
            was_stale = self._stale_since is not None
            cached_cluster, self._cluster_id = self._cluster_id, res.header.cluster_id
            self._stale_since = None
        if not was_stale:
            return
        if cached_cluster and cached_cluster != res.header.cluster_id:
            log.warning(
                "config watcher for %s: the cache came from cluster %x, not %x; replaced",
                self.prefix,
                cached_cluster,
                res.header.cluster_id,
            )
        log.warning(
            "config watcher for %s is fresh again at revision %d (the cluster answered)",
            self.prefix,
            res.header.revision,
        )

    def _save(self, *, force: bool = False) -> None:
        """Write the copy to the cache when due (never a stale one)."""
        if self._cache_path is None or self.stale:
            return
        now = time.monotonic()
        if not force and (not self._unsaved or now - self._last_save < self._save_interval_s):
            return
        if self._cache_when is not None and not self._cache_when():
            return
        with self._lock:
            copy = cache.CachedCopy(
                self.prefix,
                self._revision,
                time.time(),
                self._cluster_id,
                tuple(self._client.endpoints),
                tuple(sorted(self._data.values(), key=lambda kv: kv.key)),
            )
        if cache.save(self._cache_path, copy):
            self._unsaved = False
            self._last_save = now

    def _notify(self, changes: list[Change]) -> None:
        if self._on_change is None:
            return
        try:
            self._on_change(changes)
        except Exception:
            log.exception("on_change callback failed")

    def _report(self, error: Exception) -> None:
        if self._on_error is None:
            return
        try:
            self._on_error(error)
        except Exception:
            log.exception("on_error callback failed")
