"""The replicated part of a member: the store as a PySyncObj consumer, and its snapshot file.

``StoreConsumer`` holds the pure ``Store`` behind a lock; its one
``@replicated`` method applies a batch of requests on the tick thread and
tells the listeners. ``SnapshotFile`` is PySyncObj's serializer/deserializer
hooks in our own format (no pickle, no gzip: gzip tripled the time the tick
thread stalls on a snapshot, ~110 ms vs ~35 ms at 12k revisions); the file
travels to lagging followers as is, and ``mcpctl snapshot restore`` writes one.
"""

from __future__ import annotations

import ctypes
import json
import logging
import os
import struct
import threading
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import structlog
from pysyncobj import SyncObjConsumer, replicated
from pysyncobj.node import TCPNode

from mcpctl._proto.mcp.v1 import raft_pb2 as raft
from mcpctl.state import Applied, HistoryLimits, Store

log = structlog.get_logger("mcpctl.raft.snapshot")

JOURNAL_FILE = "raft.journal"
DUMP_FILE = "raft.snapshot"
# The process exits with this when applying an entry raises (a bug).
EXIT_APPLY_FAILED = 71

ApplyListener = Callable[[Sequence[Applied]], None]
ResetListener = Callable[[Store], None]


class StoreConsumer(SyncObjConsumer):  # type: ignore[misc]
    """The replicated part: a Store behind a lock, applied on the tick thread."""

    def __init__(self, history_limits: HistoryLimits) -> None:
        super().__init__()
        self._limits = history_limits
        self._lock = threading.Lock()
        self._store = Store(bounds=history_limits)
        self._on_applied: ApplyListener | None = None
        self._on_reset: ResetListener | None = None

    def listen(self, applied: ApplyListener | None, reset: ResetListener | None) -> None:
        """Who hears of changes, on the tick thread: ``applied`` gets the results of
        each Raft entry, ``reset`` the store a snapshot replaced it with (None: nobody)."""
        self._on_applied = applied
        self._on_reset = reset

    @replicated  # type: ignore[untyped-decorator]
    def apply_batch(self, payload: bytes) -> list[Applied]:
        try:
            batch = raft.InternalBatch.FromString(payload)
            # The term of the log entry being applied (the lease fence): PySyncObj
            # sets ``_syncObj`` (our RaftSyncObj) before its tick thread starts, so
            # journal replay gets it too.
            term = self._syncObj.applying_entry_term()
            with self._lock:
                results = [self._store.apply(req, entry_term=term) for req in batch.requests]
            if self._on_applied is not None and results:
                self._on_applied(results)
            return results
        except Exception:
            # A bug: returning would leave PySyncObj re-applying this entry on
            # every tick (a wedged node). Crash; the supervisor restarts us.
            log.critical("apply failed", exc_info=True)
            logging.shutdown()
            os._exit(EXIT_APPLY_FAILED)

    def read(self, fn: Callable[[Store], Any]) -> Any:
        """Run ``fn`` on the store under the lock (from any thread; keep it short)."""
        with self._lock:
            return fn(self._store)

    # Called on the tick thread, through SnapshotFile.
    def snapshot(self) -> bytes:
        with self._lock:
            return self._store.to_bytes()

    def install(self, data: bytes) -> None:
        store = Store.from_bytes(data, self._limits)
        return_free_memory()
        with self._lock:
            self._store = store
        log.info("snapshot installed", revision=store.revision, keys=len(store))
        if self._on_reset is not None:
            self._on_reset(store)


def _malloc_trim() -> Callable[[int], int] | None:
    try:
        trim: Callable[[int], int] = ctypes.CDLL(None).malloc_trim
        return trim
    except (OSError, AttributeError):  # not glibc
        return None


_TRIM = _malloc_trim()


def return_free_memory() -> None:
    """Hand the memory freed since to the OS (glibc only; ~1 ms).

    Loading a snapshot parses it whole, builds the store's records, then frees
    the parsed message: glibc keeps that space (a 10k-key store loaded with
    ~1.9 KB of RSS per key, ~0.8 KB after this; docs/replication.md).
    """
    if _TRIM is not None:
        _TRIM(0)


_SNAP_MAGIC = b"MCPSNAP1"
_SNAP_HEAD = struct.Struct(">8sI")


def write_snapshot_file(
    path: Path,
    *,
    store: bytes,
    last: tuple[bytes, int, int],
    prev: tuple[bytes, int, int],
    members: list[str],
) -> None:
    """A snapshot file: the store plus the two log entries and members PySyncObj needs."""
    header = json.dumps(
        {
            "entries": [[e[1], e[2], len(e[0])] for e in (last, prev)],
            "members": sorted(members),
            "store_bytes": len(store),
        }
    ).encode()
    with open(path, "wb") as f:
        f.write(_SNAP_HEAD.pack(_SNAP_MAGIC, len(header)))
        f.write(header)
        f.write(last[0])
        f.write(prev[0])
        f.write(store)


def read_snapshot_entries(path: str | None) -> tuple[Any, Any] | None:
    """The (last, previous) log entries a snapshot file holds; None when there is
    no readable snapshot there (PySyncObj then reports it when it loads it)."""
    if path is None:
        return None
    try:
        with open(path, "rb") as f:
            head = f.read(_SNAP_HEAD.size)
            magic, header_len = _SNAP_HEAD.unpack(head)
            if magic != _SNAP_MAGIC:
                return None
            header = json.loads(f.read(header_len))
            entries = []
            for idx, term, size in header["entries"]:
                entries.append((f.read(size), idx, term))
    except (OSError, ValueError, KeyError, struct.error):
        return None
    return entries[0], entries[1]


class SnapshotFile:
    """PySyncObj's ``serializer``/``deserializer`` hooks, in our own format.

    Layout: magic, header length, a JSON header (the two log entries' index
    and term and command length, the member addresses, the store length),
    the two commands, the store's protobuf bytes. PySyncObj passes
    ``(last entry, previous entry, members)`` and wants them back on load;
    the store itself is restored here (PySyncObj does not touch consumers
    when custom hooks are set). The file travels to lagging followers as is.
    """

    def __init__(self, consumer: StoreConsumer) -> None:
        self._consumer = consumer

    def serialize(self, path: str, raft_data: tuple[Any, ...]) -> None:
        last, prev, members = raft_data
        write_snapshot_file(
            Path(path),
            store=self._consumer.snapshot(),
            last=last,
            prev=prev,
            members=[n.address for n in members],
        )

    def deserialize(self, path: str) -> tuple[Any, ...]:
        with open(path, "rb") as f:
            data = f.read()
        magic, header_len = _SNAP_HEAD.unpack_from(data)
        if magic != _SNAP_MAGIC:
            raise ValueError(f"{path}: not an mcp-config snapshot")
        offset = _SNAP_HEAD.size
        header = json.loads(data[offset : offset + header_len])
        offset += header_len
        entries = []
        for idx, term, size in header["entries"]:
            entries.append((data[offset : offset + size], idx, term))
            offset += size
        store = data[offset : offset + header["store_bytes"]]
        if len(store) != header["store_bytes"]:
            raise ValueError(f"{path}: truncated snapshot")
        self._consumer.install(store)
        members = {TCPNode(address) for address in header["members"]}
        return (entries[0], entries[1], members)
