"""The last-good local cache of a ``ConfigWatcher``: its copy of a prefix on disk.

A service that starts while every endpoint is unreachable starts from the
copy it saved last (Apollo and Nacos keep the same kind of file), marked
stale until a normal read of the cluster replaces it.

The file (one per prefix in ``cache_dir``, ``watch-<hash of the prefix>.json``)
is JSON: a format tag, the prefix, the endpoints it was read through, the
cluster id, the revision, the wall time it was saved and the keys (values in
base64). It is written whole and atomically: a temporary file in the same
directory, fsync, rename over the old one, fsync of the directory; a crash
leaves the old file or the new one, never a mix.

Reading never raises: a missing file is None; a corrupt, foreign (another
format or prefix), oversized or other-cluster (no endpoint in common) file is
None with a warning naming why. Nothing here talks to the cluster.
"""

from __future__ import annotations

import base64
import binascii
import contextlib
import hashlib
import json
import logging
import os
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from mcpctl import limits
from mcpctl.client._values import KeyValue

log = logging.getLogger("mcpctl.client.cache")

FORMAT = "mcpctl-watch-cache/1"


class CacheError(Exception):
    """A cache file that cannot be used (the message says why, in one line)."""


@dataclass(frozen=True, slots=True)
class CachedCopy:
    """A copy of every key under ``prefix`` as of ``revision``, saved at ``saved_at``
    (Unix time, seconds) from the cluster ``cluster_id`` through ``endpoints``."""

    prefix: str
    revision: int
    saved_at: float
    cluster_id: int
    endpoints: tuple[str, ...]
    kvs: tuple[KeyValue, ...]


def cache_path(cache_dir: str | os.PathLike[str], prefix: str) -> Path:
    """The file that holds the copy of ``prefix`` in ``cache_dir``."""
    digest = hashlib.sha256(prefix.encode("utf-8", "surrogateescape")).hexdigest()[:16]
    return Path(cache_dir) / f"watch-{digest}.json"


def encode(copy: CachedCopy) -> bytes:
    doc = {
        "format": FORMAT,
        "prefix": copy.prefix,
        "revision": copy.revision,
        "saved_at": copy.saved_at,
        "cluster_id": copy.cluster_id,
        "endpoints": list(copy.endpoints),
        "kvs": [
            {
                "key": kv.key,
                "value": base64.b64encode(kv.value).decode("ascii"),
                "create_revision": kv.create_revision,
                "mod_revision": kv.mod_revision,
                "version": kv.version,
                "lease": kv.lease,
            }
            for kv in copy.kvs
        ],
    }
    return json.dumps(doc, separators=(",", ":")).encode("utf-8")


def decode(data: bytes) -> CachedCopy:
    """The copy in ``data``; ``CacheError`` when it is not a cache file of ours."""
    try:
        doc = json.loads(data)
    except (ValueError, UnicodeDecodeError) as e:
        raise CacheError(f"not JSON ({e})") from None
    if not isinstance(doc, dict) or doc.get("format") != FORMAT:
        found = doc.get("format") if isinstance(doc, dict) else type(doc).__name__
        raise CacheError(f"not a {FORMAT} file (format: {found!r})")
    try:
        kvs = tuple(_kv(item) for item in doc["kvs"])
        copy = CachedCopy(
            prefix=_typed(doc["prefix"], str),
            revision=_typed(doc["revision"], int),
            saved_at=float(_typed(doc["saved_at"], float | int)),
            cluster_id=_typed(doc["cluster_id"], int),
            endpoints=tuple(_typed(e, str) for e in doc["endpoints"]),
            kvs=kvs,
        )
    except (KeyError, TypeError, ValueError, binascii.Error) as e:
        raise CacheError(f"malformed ({type(e).__name__}: {e})") from None
    if copy.revision < 0 or any(not kv.key.startswith(copy.prefix) for kv in kvs):
        raise CacheError("malformed (a negative revision or a key outside the prefix)")
    return copy


def _typed(value: Any, kind: Any) -> Any:
    if not isinstance(value, kind) or isinstance(value, bool):
        raise TypeError(f"unexpected {type(value).__name__}")
    return value


def _kv(item: Any) -> KeyValue:
    if not isinstance(item, dict):
        raise TypeError("a key entry is not an object")
    return KeyValue(
        key=_typed(item["key"], str),
        value=base64.b64decode(_typed(item["value"], str), validate=True),
        create_revision=_typed(item["create_revision"], int),
        mod_revision=_typed(item["mod_revision"], int),
        version=_typed(item["version"], int),
        lease=_typed(item.get("lease", 0), int),
    )


def save(path: Path, copy: CachedCopy) -> bool:
    """Write ``copy`` to ``path`` atomically; False (old file kept, warning logged)
    when it is larger than ``CLIENT_CACHE_BYTES_MAX`` or the disk refuses it."""
    data = encode(copy)
    with contextlib.suppress(OSError):  # write_atomic reports a real failure
        path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)  # it holds values
    if len(data) > limits.CLIENT_CACHE_BYTES_MAX:
        log.warning(
            "not caching %s at revision %d: %d bytes is over CLIENT_CACHE_BYTES_MAX (%d); "
            "the previous cache file stays",
            copy.prefix,
            copy.revision,
            len(data),
            limits.CLIENT_CACHE_BYTES_MAX,
        )
        return False
    try:
        write_atomic(path, data)
    except OSError as e:
        log.warning("cannot write the cache file %s: %s", path, e)
        return False
    return True


def write_atomic(path: Path, data: bytes | Sequence[bytes], mode: int = 0o600) -> None:
    """temp file in the same directory + fsync + rename + fsync of the directory.
    ``data``: the bytes, or their parts in order (written without joining them)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            for part in (data,) if isinstance(data, bytes) else data:
                f.write(part)
            f.flush()
            os.fchmod(f.fileno(), mode)
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    fsync_dir(path.parent)


def fsync_dir(directory: Path) -> None:
    dir_fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(dir_fd)
    finally:
        os.close(dir_fd)


def load(path: Path, prefix: str, endpoints: Sequence[str]) -> CachedCopy | None:
    """The copy of ``prefix`` saved at ``path`` through one of ``endpoints``, or
    None (missing: silently; unusable: with a warning saying why)."""
    try:
        with open(path, "rb") as f:
            data = f.read(limits.CLIENT_CACHE_BYTES_MAX + 1)
    except FileNotFoundError:
        return None
    except OSError as e:
        log.warning("ignoring the cache file %s: cannot read it (%s)", path, e)
        return None
    try:
        if len(data) > limits.CLIENT_CACHE_BYTES_MAX:
            raise CacheError(f"over CLIENT_CACHE_BYTES_MAX ({limits.CLIENT_CACHE_BYTES_MAX})")
        copy = decode(data)
        if copy.prefix != prefix:
            raise CacheError(f"it holds prefix {copy.prefix!r}, not {prefix!r}")
        if not set(copy.endpoints) & set(endpoints):
            raise CacheError(
                f"it was read from another cluster (endpoints {', '.join(copy.endpoints)})"
            )
    except CacheError as e:
        log.warning("ignoring the cache file %s: %s", path, e)
        return None
    return copy


__all__ = ["FORMAT", "CacheError", "CachedCopy", "cache_path", "decode", "encode", "load", "save"]
