"""A FUSE filesystem that forgets what was not synced: a power cut on command.

Like Jepsen's LazyFS, for tests: the mount starts with the files of a backing
directory; every change then lives in the filesystem's memory (what the
programs see), and only what was synced becomes "on disk":

- ``fsync``/``fdatasync`` of a file makes its *contents* durable (by inode);
- ``fsync`` of a directory makes its *entries* durable (creates, renames and
  unlinks of names in it), as POSIX asks: a created or renamed file whose
  directory was never synced may come back under its old name, or not at all,
  and a name whose contents were never synced comes back empty;
- writing ``crash`` to ``<mount>/.powerloss`` is the power cut: everything not
  synced is dropped, what was synced is what the programs see from then on,
  and the backing directory is rewritten to hold exactly that (so a later
  mount, or a look from outside, sees the same);
- ``crash-before-rename NAME`` arms a cut at an exact point: the first rename
  onto a file called NAME is not done, the power is cut instead, and every
  call but the control file's fails with EIO (the machine is "off") until
  ``thaw`` (after the test killed the programs). Reading the control file
  says how many cuts happened;
- ``crash-on-write BYTES`` likewise cuts the power at the first write whose
  data contains BYTES (that write is not done);
- ``fail-syncs`` makes every later file fsync fail with EIO (a dying disk);
- ``sync-delay SECONDS`` makes every later file fsync that slow (a slow disk:
  the whole filesystem waits), which widens any window between a write being
  acknowledged and being durable.

The kernel page cache is kept out of the way (``direct_io``, no attribute or
entry caching), so a read after the cut shows the cut. Memory-mapped writes
are not modelled: ``direct_io`` mounts refuse shared writable mmaps (our Raft
journal writes with ``pwrite``). Run as ``python -m tests.powerloss.lazyfs
BACKING MOUNTPOINT`` (``POWERLOSS_SYNC_DELAY_S``: a slow disk, seconds per
file fsync); ``tests.powerloss.mount`` starts and stops it.
"""

from __future__ import annotations

import errno
import os
import shutil
import stat
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import mfusepy

from tests.powerloss.protocol import CONTROL, SYNC_DELAY_ENV


@dataclass
class Inode:
    is_dir: bool
    mode: int
    data: bytearray = field(default_factory=bytearray)
    mtime_ns: int = field(default_factory=time.time_ns)


def _parent(path: str) -> str:
    return os.path.dirname(path) or "/"


class PowerLossFS(mfusepy.Operations):  # type: ignore[misc]
    """See the module docstring. Calls run on libfuse's threads, one lock
    around each (except a slow fsync's wait): simple, and fast enough."""

    use_ns = True

    def __init__(self, backing: Path, sync_delay_s: float = 0.0) -> None:
        self._backing = backing
        # A slow disk: every fsync of a file takes this long (the whole
        # filesystem waits), which widens any window between a write being
        # acknowledged and being durable.
        self._sync_delay_s = sync_delay_s
        self._lock = threading.Lock()
        self._inodes: dict[int, Inode] = {}
        self._names: dict[str, int] = {}  # what programs see: path -> inode
        self._durable_names: dict[str, int] = {}  # what a power cut keeps
        self._durable_data: dict[int, bytes] = {}
        self._next_ino = 1
        self.crashes = 0
        self._armed_rename: str | None = None
        self._fail_syncs = False
        self._armed_write: bytes | None = None
        self._frozen = False
        self._load()

    # -- state ---------------------------------------------------------------------
    def _new(self, is_dir: bool, mode: int, data: bytes = b"") -> int:
        ino = self._next_ino
        self._next_ino += 1
        self._inodes[ino] = Inode(is_dir, mode, bytearray(data))
        return ino

    def _load(self) -> None:
        root = self._new(True, stat.S_IFDIR | 0o755)
        self._names["/"] = root
        for dirpath, dirnames, filenames in os.walk(self._backing):
            rel = "/" + os.path.relpath(dirpath, self._backing).lstrip(".")
            rel = rel.rstrip("/") or "/"
            for d in dirnames:
                self._names[os.path.join(rel, d)] = self._new(True, stat.S_IFDIR | 0o755)
            for f in filenames:
                data = Path(dirpath, f).read_bytes()
                self._names[os.path.join(rel, f)] = self._new(False, stat.S_IFREG | 0o644, data)
        self._durable_names = dict(self._names)
        self._durable_data = {ino: bytes(n.data) for ino, n in self._inodes.items() if not n.is_dir}

    def crash(self) -> None:
        """The power cut: keep only what was synced."""
        names: dict[str, int] = {}
        for path in sorted(self._durable_names, key=lambda p: p.count("/")):
            if path == "/" or _parent(path) in names:
                names[path] = self._durable_names[path]
        self._names = names
        self._durable_names = dict(names)
        kept = set(names.values())
        self._inodes = {ino: n for ino, n in self._inodes.items() if ino in kept}
        for ino, node in self._inodes.items():
            if not node.is_dir:
                node.data = bytearray(self._durable_data.get(ino, b""))
        self._durable_data = {ino: bytes(n.data) for ino, n in self._inodes.items()}
        self.crashes += 1
        self._write_backing()

    def _write_backing(self) -> None:
        for entry in self._backing.iterdir():
            if entry.is_dir() and not entry.is_symlink():
                shutil.rmtree(entry)
            else:
                entry.unlink()
        for path, ino in sorted(self._names.items(), key=lambda kv: kv[0].count("/")):
            if path == "/":
                continue
            target = self._backing / path.lstrip("/")
            if self._inodes[ino].is_dir:
                target.mkdir(exist_ok=True)
            else:
                target.write_bytes(bytes(self._inodes[ino].data))

    def _control(self, command: bytes) -> None:
        word, _, arg = command.strip().decode().partition(" ")
        if word == "crash":
            self.crash()
        elif word == "crash-before-rename" and arg:
            self._armed_rename = arg
        elif word == "thaw":
            self._frozen = False
        elif word == "crash-on-write" and arg:
            self._armed_write = arg.encode()
        elif word == "fail-syncs":
            self._fail_syncs = True
        elif word == "sync-delay" and arg:
            self._sync_delay_s = float(arg)
        else:
            raise mfusepy.FuseOSError(errno.EINVAL)

    def _ino(self, path: str) -> int:
        if self._frozen:
            raise mfusepy.FuseOSError(errno.EIO)
        ino = self._names.get(path)
        if ino is None:
            raise mfusepy.FuseOSError(errno.ENOENT)
        return ino

    def _node(self, path: str, fh: int | None = None) -> Inode:
        if self._frozen:
            raise mfusepy.FuseOSError(errno.EIO)
        if fh:
            node = self._inodes.get(fh)
            if node is not None:
                return node
        return self._inodes[self._ino(path)]

    # -- operations ------------------------------------------------------------------
    def getattr(self, path: str, fh: int | None = None) -> dict[str, Any]:
        with self._lock:
            if path == CONTROL:
                return {"st_mode": stat.S_IFREG | 0o666, "st_nlink": 1, "st_size": 0}
            if self._frozen and path != "/":
                raise mfusepy.FuseOSError(errno.EIO)
            node = self._node(path, fh)
            return {
                "st_mode": node.mode,
                "st_nlink": 2 if node.is_dir else 1,
                "st_size": len(node.data),
                "st_uid": os.getuid(),
                "st_gid": os.getgid(),
                "st_mtime": node.mtime_ns,
                "st_ctime": node.mtime_ns,
                "st_atime": node.mtime_ns,
            }

    def readdir(self, path: str, fh: int) -> list[str]:
        with self._lock:
            self._ino(path)
            prefix = path.rstrip("/") + "/"
            names = [
                p[len(prefix) :]
                for p in self._names
                if p != "/" and p.startswith(prefix) and "/" not in p[len(prefix) :]
            ]
            return [".", "..", *names]

    def opendir(self, path: str) -> int:
        with self._lock:
            return self._ino(path)

    def releasedir(self, path: str, fh: int) -> int:
        return 0

    def fsyncdir(self, path: str, datasync: int, fh: int) -> int:
        """A directory's entries become durable (not its files' contents)."""
        with self._lock:
            self._ino(path)
            prefix = path.rstrip("/") + "/"

            def child(p: str) -> bool:
                return p != "/" and p.startswith(prefix) and "/" not in p[len(prefix) :]

            for p in [p for p in self._durable_names if child(p)]:
                del self._durable_names[p]
            for p, ino in self._names.items():
                if child(p):
                    self._durable_names[p] = ino
                    # A directory's own contents are its entries; nothing to copy.
            return 0

    def mkdir(self, path: str, mode: int) -> int:
        with self._lock:
            if path in self._names:
                raise mfusepy.FuseOSError(errno.EEXIST)
            self._ino(_parent(path))
            self._names[path] = self._new(True, stat.S_IFDIR | (mode & 0o7777))
            return 0

    def rmdir(self, path: str) -> int:
        with self._lock:
            self._ino(path)
            if any(p.startswith(path.rstrip("/") + "/") for p in self._names):
                raise mfusepy.FuseOSError(errno.ENOTEMPTY)
            del self._names[path]
            return 0

    def create(self, path: str, mode: int, fi: Any = None) -> int:
        with self._lock:
            self._ino(_parent(path))
            ino = self._names.get(path)
            if ino is None:
                ino = self._new(False, stat.S_IFREG | (mode & 0o7777))
                self._names[path] = ino
            return ino

    def open(self, path: str, flags: int) -> int:
        with self._lock:
            if path == CONTROL:
                return 0
            ino = self._ino(path)
            if flags & os.O_TRUNC:
                self._inodes[ino].data.clear()
            return ino

    def read(self, path: str, size: int, offset: int, fh: int) -> bytes:
        with self._lock:
            if path == CONTROL:
                return f"crashes {self.crashes}\n".encode()[offset : offset + size]
            node = self._node(path, fh)
            return bytes(node.data[offset : offset + size])

    def write(self, path: str, data: bytes, offset: int, fh: int) -> int:
        with self._lock:
            if path == CONTROL:
                self._control(data)
                return len(data)
            node = self._node(path, fh)
            if self._armed_write is not None and self._armed_write in data:
                self._armed_write = None
                self.crash()
                self._frozen = True
                raise mfusepy.FuseOSError(errno.EIO)
            if offset > len(node.data):
                node.data.extend(b"\0" * (offset - len(node.data)))
            node.data[offset : offset + len(data)] = data
            node.mtime_ns = time.time_ns()
            return len(data)

    def truncate(self, path: str | None, length: int, fh: int | None = None) -> int:
        with self._lock:
            if path == CONTROL:
                return 0
            node = self._node(path or "", fh)
            if length < len(node.data):
                del node.data[length:]
            else:
                node.data.extend(b"\0" * (length - len(node.data)))
            return 0

    def fsync(self, path: str, datasync: int, fh: int) -> int:
        """A file's contents become durable (its name only with its directory)."""
        with self._lock:
            if self._frozen or self._fail_syncs:
                raise mfusepy.FuseOSError(errno.EIO)
            ino = fh if fh in self._inodes else self._ino(path)
            data = bytes(self._inodes[ino].data)
            crashes, delay_s = self.crashes, self._sync_delay_s
        if delay_s:
            # The disk is busy (other calls go on); a power cut meanwhile wins.
            time.sleep(delay_s)
        with self._lock:
            if self.crashes != crashes:
                raise mfusepy.FuseOSError(errno.EIO)
            if ino in self._inodes:
                self._durable_data[ino] = data
            return 0

    def flush(self, path: str, fh: int) -> int:
        return 0

    def release(self, path: str, fh: int) -> int:
        return 0

    def rename(self, old: str, new: str) -> int:
        with self._lock:
            ino = self._ino(old)
            self._ino(_parent(new))
            if self._armed_rename is not None and os.path.basename(new) == self._armed_rename:
                self._armed_rename = None
                self.crash()
                self._frozen = True
                raise mfusepy.FuseOSError(errno.EIO)
            moved = {p: i for p, i in self._names.items() if p == old or p.startswith(old + "/")}
            for p in moved:
                del self._names[p]
            for p, i in moved.items():
                self._names[new + p[len(old) :]] = i
            del ino
            return 0

    def unlink(self, path: str) -> int:
        with self._lock:
            self._ino(path)
            del self._names[path]
            return 0

    def chmod(self, path: str, mode: int) -> int:
        with self._lock:
            node = self._node(path)
            node.mode = (node.mode & ~0o7777) | (mode & 0o7777)
            return 0

    def chown(self, path: str, uid: int, gid: int) -> int:
        return 0

    def utimens(self, path: str, times: Any = None) -> int:
        return 0

    def access(self, path: str, amode: int) -> int:
        with self._lock:
            if path != CONTROL:
                self._ino(path)
            return 0

    def statfs(self, path: str) -> dict[str, int]:
        return {
            "f_bsize": 4096,
            "f_frsize": 4096,
            "f_blocks": 1 << 20,
            "f_bfree": 1 << 19,
            "f_bavail": 1 << 19,
            "f_namemax": 255,
        }

    def destroy(self, path: str) -> None:
        """A clean unmount: everything is written out, as a real one would."""
        with self._lock:
            self._write_backing()


def main(argv: list[str]) -> int:
    backing, mountpoint = Path(argv[1]), argv[2]
    backing.mkdir(parents=True, exist_ok=True)
    mfusepy.FUSE(
        PowerLossFS(backing, float(os.environ.get(SYNC_DELAY_ENV, "0"))),
        mountpoint,
        foreground=True,
        direct_io=True,
        attr_timeout=0,
        entry_timeout=0,
        negative_timeout=0,
    )
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
