"""Our Raft journal: PySyncObj's file format, written with ``pwrite`` and made
durable with one ``fdatasync`` per appended batch (group commit).

PySyncObj 0.3.17's ``FileJournal`` writes into an mmap and never syncs it; its
``.meta`` (term, vote, commit index) and its snapshot files are replaced by a
rename that is never synced either (issue #84 upstream). A power cut of a
majority could then lose acknowledged writes, or bring a member back with a
term or vote it had already moved past. ``DurableJournal`` keeps the same
on-disk format (a data dir written by either can be read by the other) and:

- ``add`` writes the record with ``pwrite`` (the page cache: it survives a
  process crash, as before); ``sync`` makes every record added since the last
  sync durable with one ``fdatasync`` (``Durability.FSYNC``), and
  ``RaftSyncObj`` calls it before any append is acknowledged or counted;
- term and vote are written to ``.meta`` through a temp file, fsynced,
  renamed, and the directory fsynced before ``setCurrentTerm`` returns (so
  before the vote request or grant that depends on them is sent);
- ``deleteEntriesTo`` (after a snapshot) writes the shortened journal to a
  temp file and renames it (the directory synced first, so the snapshot's
  own rename is durable before the journal forgets what the snapshot holds);
- loading stops at the first record that does not frame (lengths at both
  ends) or whose index does not follow the previous one: a torn tail never
  comes back as entries.

With ``Durability.NONE`` nothing is synced (PySyncObj's behaviour): the
journal survives a process crash, not a power cut.
"""

from __future__ import annotations

import enum
import os
import struct
import threading
import time
from pathlib import Path
from typing import Any

from pysyncobj.journal import Journal
from pysyncobj.pickle import dumps, loads, to_bytes
from pysyncobj.version import VERSION

# PySyncObj 0.3.17's journal layout (journal.py:170-185): a header (name,
# version, format version, offset of the end of the last record), then
# records of [size u32][index u64][term u64][command][size u32].
_NAME_SIZE = 24
_VERSION_SIZE = 8
_FORMAT_VERSION = 1
FIRST_RECORD_OFFSET = _NAME_SIZE + _VERSION_SIZE + 4 + 4
_LAST_RECORD_OFFSET_AT = _NAME_SIZE + _VERSION_SIZE + 4
_U32 = struct.Struct("<I")
_IDX_TERM = struct.Struct("<QQ")
META_SUFFIX = ".meta"
# The process exits with this when an fdatasync of the journal fails: after a
# failed fsync the kernel may have dropped the dirty pages and a retry can
# report success for data that is gone (PostgreSQL's "fsyncgate"), so the
# member restarts from what is really on disk instead of acknowledging.
EXIT_SYNC_FAILED = 72


class Durability(enum.StrEnum):
    """``raft.durability``: what a member syncs before it acknowledges."""

    FSYNC = "fsync"
    NONE = "none"


# Data directory -> durability, registered by RaftSyncObj before PySyncObj
# builds its journal (PySyncObj passes only the journal path).
_modes: dict[str, Durability] = {}
_modes_lock = threading.Lock()


def register(data_dir: Path, durability: Durability) -> None:
    with _modes_lock:
        _modes[os.path.realpath(data_dir)] = durability


def durability_of(path: str) -> Durability:
    """The durability registered for the directory holding ``path`` (default fsync)."""
    with _modes_lock:
        return _modes.get(os.path.realpath(os.path.dirname(path)), Durability.FSYNC)


def fsync_dir(directory: str) -> None:
    fd = os.open(directory or ".", os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def durable_replace(src: str, dst: str) -> None:
    """Rename ``src`` over ``dst``: with fsync, ``src``'s data is synced first and
    the directory after, so ``dst`` is the old file or the whole new one."""
    durable = durability_of(dst) == Durability.FSYNC
    if durable:
        fd = os.open(src, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
    os.replace(src, dst)
    if durable:
        fsync_dir(os.path.dirname(dst))


def write_replace(path: str, data: bytes) -> None:
    """Write ``data`` to ``path`` through a temp file and ``durable_replace``."""
    tmp = path + ".tmp"
    with open(tmp, "wb") as f:
        f.write(data)
    durable_replace(tmp, path)


def _same(a: tuple[Any, int, int], b: tuple[Any, int, int]) -> bool:
    return bool(to_bytes(a[0]) == to_bytes(b[0]) and a[1] == b[1] and a[2] == b[2])


def _header(last_record_offset: int) -> bytes:
    name = b"PYSYNCOBJ".ljust(_NAME_SIZE, b"\0")
    version = str(VERSION).encode().ljust(_VERSION_SIZE, b"\0")
    head: bytes = name + version + struct.pack("<II", _FORMAT_VERSION, last_record_offset)
    return head


def _record(command: Any, idx: int, term: int) -> bytes:
    body: bytes = _IDX_TERM.pack(idx, term) + to_bytes(command)
    size = _U32.pack(len(body))
    return size + body + size


def parse_records(data: bytes) -> tuple[list[tuple[bytes, int, int]], list[int]]:
    """The journal's entries and their offsets: up to the header's end offset,
    stopping at the first record that does not frame or does not follow."""
    if len(data) < FIRST_RECORD_OFFSET:
        return [], []
    end = min(_U32.unpack_from(data, _LAST_RECORD_OFFSET_AT)[0], len(data))
    entries: list[tuple[bytes, int, int]] = []
    offsets: list[int] = []
    offset = FIRST_RECORD_OFFSET
    while offset + 4 + _IDX_TERM.size + 4 <= end:
        (size,) = _U32.unpack_from(data, offset)
        stop = offset + 4 + size + 4
        if size < _IDX_TERM.size or stop > end:
            break
        if _U32.unpack_from(data, stop - 4)[0] != size:
            break
        idx, term = _IDX_TERM.unpack_from(data, offset + 4)
        if entries and idx != entries[-1][1] + 1:
            break
        entries.append((data[offset + 4 + _IDX_TERM.size : stop - 4], idx, term))
        offsets.append(offset)
        offset = stop
    return entries, offsets


class DurableJournal(Journal):  # type: ignore[misc]
    """PySyncObj's ``Journal`` interface; see the module docstring."""

    def __init__(self, path: str, durability: Durability) -> None:
        self._path = path
        self._durable = durability == Durability.FSYNC
        self._meta_path = path + META_SUFFIX
        if not os.path.exists(path):
            write_replace(path, _header(FIRST_RECORD_OFFSET))
        with open(path, "rb") as f:
            # Up to the header's end offset only: PySyncObj's mmap'd journals
            # grew by doubling and never shrank (the rest is old or zeros).
            data = f.read(FIRST_RECORD_OFFSET)
            if len(data) == FIRST_RECORD_OFFSET:
                end = _U32.unpack_from(data, _LAST_RECORD_OFFSET_AT)[0]
                data += f.read(max(0, end - FIRST_RECORD_OFFSET))
        self._entries, self._offsets = parse_records(data)
        self._end = (
            self._offsets[-1] + len(_record(*self._entries[-1]))
            if self._entries
            else FIRST_RECORD_OFFSET
        )
        self._fd = os.open(path, os.O_RDWR)
        self._meta: dict[str, Any] = self._read_meta()
        self._meta_saved = True
        self._dirty = False
        # Group-commit accounting (tick thread writes, any thread reads).
        self.syncs = 0
        self.synced_records = 0
        self.sync_seconds = 0.0
        self._unsynced_records = 0

    @property
    def durable(self) -> bool:
        return self._durable

    def _read_meta(self) -> dict[str, Any]:
        try:
            with open(self._meta_path, "rb") as f:
                meta = loads(f.read())
        except (OSError, EOFError, ValueError, TypeError):
            return {}
        except Exception:  # a torn pickle raises anything; PySyncObj ignores it too
            return {}
        return meta if isinstance(meta, dict) else {}

    def _store_meta(self) -> None:
        write_replace(self._meta_path, dumps(self._meta))
        self._meta_saved = True

    # -- the log -----------------------------------------------------------------
    def add(self, command: Any, idx: int, term: int) -> None:
        record = _record(command, idx, term)
        os.pwrite(self._fd, record, self._end)
        self._entries.append((command, idx, term))
        self._offsets.append(self._end)
        self._end += len(record)
        self._unsynced_records += 1
        self._written()

    def _written(self) -> None:
        if self._durable:
            self._dirty = True  # the header goes out with the next sync
        else:
            self._write_end()

    def _write_end(self) -> None:
        os.pwrite(self._fd, _U32.pack(self._end), _LAST_RECORD_OFFSET_AT)

    def _shrunk(self) -> None:
        """The end moved back: the header says so at once (records written
        over the old ones are then never read back as the old ones after a
        process crash), and the change is synced with the next batch."""
        self._write_end()
        self._dirty = self._durable

    def sync(self) -> bool:
        """Make every change since the last sync durable (one fdatasync); False
        when there was nothing to sync or durability is ``none``."""
        if not self._dirty:
            return False
        started = time.perf_counter()
        self._write_end()
        os.fdatasync(self._fd)
        self._dirty = False
        self.syncs += 1
        self.synced_records += self._unsynced_records
        self._unsynced_records = 0
        self.sync_seconds += time.perf_counter() - started
        return True

    def clear(self) -> None:
        self._entries = []
        self._offsets = []
        self._end = FIRST_RECORD_OFFSET
        self._shrunk()

    def deleteEntriesFrom(self, entryFrom: int) -> None:
        if entryFrom >= len(self._entries):
            return
        self._end = self._offsets[entryFrom]
        del self._entries[entryFrom:]
        del self._offsets[entryFrom:]
        self._shrunk()

    def deleteEntriesTo(self, entryTo: int) -> None:
        """Drop the entries a snapshot now holds: the shortened journal is a new
        file renamed over the old one (never a journal rewritten in place)."""
        self.sync()
        directory = os.path.dirname(self._path)
        if self._durable:
            fsync_dir(directory)  # the snapshot's rename, before the journal forgets
        entries = self._entries[entryTo:]
        records = [_record(*e) for e in entries]
        offsets = []
        end = FIRST_RECORD_OFFSET
        for r in records:
            offsets.append(end)
            end += len(r)
        write_replace(self._path, _header(end) + b"".join(records))
        os.close(self._fd)
        self._fd = os.open(self._path, os.O_RDWR)
        self._entries, self._offsets, self._end = entries, offsets, end

    def align_to(self, prev: tuple[Any, int, int], last: tuple[Any, int, int]) -> bool:
        """Start the journal at a snapshot's two entries if it holds them further
        on (a crash between the snapshot's rename and the journal's): PySyncObj
        would otherwise throw away the whole journal, entries after the
        snapshot included (syncobj.py:1490-1495). True when it was shortened."""
        for pos, entry in enumerate(self._entries):
            if entry[1] != prev[1]:
                continue
            following = self._entries[pos + 1 : pos + 2]
            if pos == 0 or not _same(entry, prev) or not following:
                return False
            if not _same(following[0], last):
                return False
            self.deleteEntriesTo(pos)
            return True
        return False

    def __getitem__(self, item: Any) -> Any:
        return self._entries[item]

    def __len__(self) -> int:
        return len(self._entries)

    def _destroy(self) -> None:
        if self._fd >= 0:
            if self._dirty:
                self.sync()
            os.close(self._fd)
            self._fd = -1

    def flush(self) -> None:
        self.sync()

    # -- term, vote, commit index --------------------------------------------------
    def setRaftCommitIndex(self, raftCommitIndex: int) -> None:
        self._meta["raftCommitIndex"] = raftCommitIndex
        self._meta_saved = False

    def getRaftCommitIndex(self) -> int:
        return int(self._meta.get("raftCommitIndex", 1))

    def setCurrentTerm(self, term: int, votedForNodeId: Any) -> None:
        """Durable (with fsync) before it returns: PySyncObj sends the vote
        request or grant that depends on it right after."""
        self._meta["currentTerm"] = term
        self._meta["votedForNodeId"] = votedForNodeId
        self._store_meta()

    def getCurrentTerm(self) -> int:
        return int(self._meta.get("currentTerm", 0))

    def getVotedForNodeId(self) -> Any:
        return self._meta.get("votedForNodeId")

    def onOneSecondTimer(self) -> None:
        if not self._meta_saved:
            self._store_meta()


def create_journal(journal_file: str | None = None) -> Journal:
    """PySyncObj's ``createJournal`` (syncobj.py:166), with our file journal."""
    if journal_file is None:
        from pysyncobj.journal import MemoryJournal

        return MemoryJournal()
    return DurableJournal(journal_file, durability_of(journal_file))
