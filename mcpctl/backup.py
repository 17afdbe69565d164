"""Backups: the file format of ``mcpctl snapshot save`` and offline restore.

A backup file is ``MAGIC``, one JSON line (revision, byte count, SHA-256,
creation time), then the store's snapshot bytes (``Store.to_bytes``). It is
verified (length and checksum) before anything uses it.

Restore seeds a *new* cluster: for each member, before its first start,
``restore(file, data_dir, members)`` writes a Raft snapshot into its empty
data directory, as if the log had been compacted at index 2 of term 0. All
members restored from the same file start with identical state, elect a
leader and go on from the backup's revision. The old cluster's member
directory is dropped (the new members come from the new configuration).
"""

from __future__ import annotations

import hashlib
import json
import time
from dataclasses import dataclass
from pathlib import Path

from mcpctl._proto.mcp.v1 import raft_pb2 as raft
from mcpctl.client.cache import write_atomic
from mcpctl.errors import InvalidArgument

MAGIC = b"MCPBACKUP1\n"
# PySyncObj's no-op command byte (_COMMAND_TYPE.NO_OP).
_NO_OP = b"\x01"


@dataclass(frozen=True, slots=True)
class BackupInfo:
    revision: int
    size: int
    sha256: str
    created: float
    keys: int


def write(path: Path, store_bytes: bytes, revision: int) -> BackupInfo:
    """Write a backup atomically and durably (temp file, fsync, rename, fsync of
    the directory), readable by its owner only: it holds every value."""
    digest = hashlib.sha256(store_bytes).hexdigest()
    meta = {
        "revision": revision,
        "bytes": len(store_bytes),
        "sha256": digest,
        "created": time.time(),
    }
    write_atomic(path, (MAGIC, json.dumps(meta).encode() + b"\n", store_bytes))
    return inspect(path)


def read(path: Path) -> tuple[BackupInfo, bytes]:
    """The verified store bytes of a backup. Raises InvalidArgument naming the problem."""
    try:
        data = path.read_bytes()
    except OSError as e:
        raise InvalidArgument(f"{path}: cannot read: {e.strerror}") from None
    if not data.startswith(MAGIC):
        raise InvalidArgument(f"{path}: not an mcp-config backup")
    end = data.find(b"\n", len(MAGIC))
    try:
        meta = json.loads(data[len(MAGIC) : end])
        body = data[end + 1 :]
        if len(body) != meta["bytes"]:
            raise InvalidArgument(f"{path}: truncated ({len(body)} of {meta['bytes']} bytes)")
        if hashlib.sha256(body).hexdigest() != meta["sha256"]:
            raise InvalidArgument(f"{path}: checksum mismatch (corrupted backup)")
        snap = raft.Snapshot.FromString(body)
    except (ValueError, KeyError, TypeError) as e:
        raise InvalidArgument(f"{path}: damaged backup ({e})") from None
    info = BackupInfo(meta["revision"], len(body), meta["sha256"], meta["created"], len(snap.kvs))
    return info, body


def inspect(path: Path) -> BackupInfo:
    return read(path)[0]


def restore(path: Path, data_dir: Path, raft_addresses: list[str]) -> BackupInfo:
    """Seed an empty data directory from a backup (see the module docstring)."""
    # Here: the Raft adapter (PySyncObj) is node-side; `snapshot save` in the SDK never needs it.
    from mcpctl.raft.snapshot import DUMP_FILE, JOURNAL_FILE, write_snapshot_file

    info, body = read(path)
    data_dir.mkdir(parents=True, exist_ok=True)
    for name in (JOURNAL_FILE, DUMP_FILE):
        if (data_dir / name).exists():
            raise InvalidArgument(
                f"{data_dir}: already holds data ({name}); restore needs an empty one"
            )
    snap = raft.Snapshot.FromString(body)
    del snap.members[:]  # the new cluster's members come from its configuration
    write_snapshot_file(
        data_dir / DUMP_FILE,
        store=snap.SerializeToString(deterministic=True),
        last=(_NO_OP, 2, 0),
        prev=(_NO_OP, 1, 0),
        members=raft_addresses,
    )
    return info
