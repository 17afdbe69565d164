"""What mcpctl prints about a result goes through here: one printer per output format.

``-w simple`` (default) is for people and shell pipelines, ``-w json`` is a
stable contract (docs/cli.md), ``-w table`` uses rich (imported lazily).
Keys and values are text; a value that is not UTF-8 is printed as base64
and, in JSON, flagged with ``"value_encoding": "base64"``.

``printer(fmt)`` is chosen once per command from ``-w`` and is one of::

    Printer                the interface: one method per kind of result
    |-- SimplePrinter      lines of text
    |   `-- TablePrinter   rich tables where a result is rows; a stream (watch,
    |                      keep-alive), a document (export, backup) or a one-line
    |                      answer (lease revoke) prints as simple
    `-- JsonPrinter        one JSON object per result (per event for watch)

A command never tests the format; it calls the printer's method.
"""

from __future__ import annotations

import json
import sys
from abc import ABC, abstractmethod
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any, ClassVar, TextIO

from mcpctl.cli.fields import (
    HEALTH_SERVING,
    INSTANCE_COLUMNS,
    MEMBER_FIELDS,
    OP_SIGN,
    STATUS_COLUMNS,
    backup_json,
    change_json,
    field_diffs,
    header_json,
    history_json,
    instance_rows,
    iso_ms,
    kv_json,
    member_rows,
    shown,
    status_rows,
    text_of,
    write_summary,
)
from mcpctl.cli.leaseid import lease_hex
from mcpctl.client import (
    DeleteResult,
    GetResult,
    Header,
    LeaseGrant,
    LeaseList,
    PutResult,
    TimeToLive,
    WatchBatch,
)
from mcpctl.status_view import status_json

if TYPE_CHECKING:
    from mcpctl.backup import BackupInfo
    from mcpctl.client import ClusterStatus, Member
    from mcpctl.client.mcp import ExportResult, HistoryResult, WriteResult


class Printer(ABC):
    """The interface every format implements (``printer(fmt)`` builds the one for ``fmt``)."""

    fmt: ClassVar[str]

    def __init__(self, out: TextIO | None = None) -> None:
        self.out = out or sys.stdout

    @abstractmethod
    def get(self, res: GetResult, *, keys_only: bool = False, count_only: bool = False) -> None:
        """A read: the key-values, or just the keys, or just the count."""

    @abstractmethod
    def put(self, res: PutResult) -> None:
        """A write (and the previous key-value with --prev-kv)."""

    @abstractmethod
    def delete(self, res: DeleteResult) -> None:
        """How many keys went (and which, with --prev-kv)."""

    @abstractmethod
    def watch(self, batch: WatchBatch, *, progress: bool = False) -> None:
        """One batch of events, flushed (a watch is read as it happens)."""

    @abstractmethod
    def members(self, members: Sequence[Member]) -> None:
        """The voting members."""

    @abstractmethod
    def status(self, resp: ClusterStatus) -> None:
        """Every member's health and replication lag."""

    @abstractmethod
    def health(self, states: Sequence[tuple[str, str]]) -> None:
        """Each endpoint's grpc.health.v1 state (``SERVING``, ``UNREACHABLE (…)``…)."""

    @abstractmethod
    def config_write(self, res: WriteResult, *, done: str, hint: str = "") -> None:
        """What apply/rollback changed (or would change): per key, per field."""

    @abstractmethod
    def export(self, res: ExportResult) -> None:
        """The MCP config as one document."""

    @abstractmethod
    def history(self, res: HistoryResult) -> None:
        """A key's changes, newest first: revision, time, type, key (and value)."""

    @abstractmethod
    def backup(self, info: BackupInfo) -> None:
        """A backup file's revision, size, checksum and key count."""

    @abstractmethod
    def lease_grant(self, res: LeaseGrant) -> None:
        """A new lease: its id (hex) and the TTL granted."""

    @abstractmethod
    def lease_revoke(self, lease_id: int, header: Header) -> None:
        """A lease revoked (its keys deleted)."""

    @abstractmethod
    def lease_keepalive(self, lease_id: int, ttl: int) -> None:
        """One renewal and the TTL it gave, flushed (keep-alive prints as it goes)."""

    @abstractmethod
    def lease_ttl(self, res: TimeToLive, *, keys: bool = False) -> None:
        """A lease's granted and remaining TTL (and its keys with --keys)."""

    @abstractmethod
    def lease_list(self, res: LeaseList) -> None:
        """Every live lease's id."""

    @abstractmethod
    def instances(self, rows: Sequence[dict[str, Any]]) -> None:
        """The live fleet: one row per instance (``mcpctl.fleet.operator.Row.json``)."""

    @abstractmethod
    def operator(self, model: str, ident: str, state: dict[str, Any], revision: int) -> None:
        """An instance's operator state after drain/undrain."""


class SimplePrinter(Printer):
    """Lines of text, etcdctl's ``-w simple``: values as they are, one per line."""

    fmt = "simple"

    def get(self, res: GetResult, *, keys_only: bool = False, count_only: bool = False) -> None:
        if count_only:
            self.out.write(f"{res.count}\n")
            return
        for i in res.kvs:
            self.out.write(i.key + "\n")
            if not keys_only:
                self.out.write(text_of(i.value)[0] + "\n")

    def put(self, res: PutResult) -> None:
        self.out.write("OK\n")
        if res.prev_kv is not None:
            self.out.write(res.prev_kv.key + "\n" + text_of(res.prev_kv.value)[0] + "\n")

    def delete(self, res: DeleteResult) -> None:
        self.out.write(f"{res.deleted}\n")
        for i in res.prev_kvs:
            self.out.write(i.key + "\n" + text_of(i.value)[0] + "\n")

    def watch(self, batch: WatchBatch, *, progress: bool = False) -> None:
        for ev in batch.events:
            # As etcdctl: the type, then the previous key and value (with
            # --prev-kv), then the key and, for a PUT, its value.
            self.out.write(f"{ev.type}\n")
            if ev.prev_kv is not None:
                self.out.write(f"{ev.prev_kv.key}\n{text_of(ev.prev_kv.value)[0]}\n")
            self.out.write(f"{ev.kv.key}\n")
            if ev.type == "PUT":
                self.out.write(text_of(ev.kv.value)[0] + "\n")
        self.out.flush()

    def members(self, members: Sequence[Member]) -> None:
        for r in member_rows(members):
            self.out.write(", ".join(r) + "\n")

    def status(self, resp: ClusterStatus) -> None:
        for row in status_rows(resp):
            self.out.write(", ".join(row) + "\n")

    def health(self, states: Sequence[tuple[str, str]]) -> None:
        for endpoint, state in states:
            self.out.write(f"{endpoint} {state}\n")

    def config_write(self, res: WriteResult, *, done: str, hint: str = "") -> None:
        for ch in res.changes:
            self.out.write(f"{OP_SIGN[ch.op]} {ch.key}\n")
            for path, old, new in field_diffs(ch):
                name = path or "value"
                if ch.op == "add":
                    self.out.write(f"    {name}: {shown(new)}\n")
                elif ch.op == "change":
                    self.out.write(f"    {name}: {shown(old)} -> {shown(new)}\n")
        self._summary(res, done, hint)

    def _summary(self, res: WriteResult, done: str, hint: str) -> None:
        self.out.write(write_summary(res, done) + (f" {hint}" if hint else "") + "\n")

    def export(self, res: ExportResult) -> None:
        self.out.write(res.document if res.document.endswith("\n") else res.document + "\n")

    def history(self, res: HistoryResult) -> None:
        for e in res.entries:
            ev = e.event
            who = e.identity or "-"
            self.out.write(f"{e.revision} {iso_ms(e.ts_ms)} {who} {ev.type} {ev.kv.key}\n")
            if ev.type == "PUT":
                self.out.write(text_of(ev.kv.value)[0] + "\n")

    def backup(self, info: BackupInfo) -> None:
        self.out.write(", ".join(f"{k} {v}" for k, v in backup_json(info).items()) + "\n")

    # As etcdctl prints them.
    def lease_grant(self, res: LeaseGrant) -> None:
        self.out.write(f"lease {lease_hex(res.id)} granted with TTL({res.ttl}s)\n")

    def lease_revoke(self, lease_id: int, header: Header) -> None:
        self.out.write(f"lease {lease_hex(lease_id)} revoked\n")

    def lease_keepalive(self, lease_id: int, ttl: int) -> None:
        self.out.write(f"lease {lease_hex(lease_id)} keepalived with TTL({ttl})\n")
        self.out.flush()

    def lease_ttl(self, res: TimeToLive, *, keys: bool = False) -> None:
        line = f"lease {lease_hex(res.id)} granted with TTL({res.granted_ttl}s), "
        line += f"remaining({res.ttl}s)"
        if keys:
            line += f", attached keys([{' '.join(res.keys)}])"
        self.out.write(line + "\n")

    def lease_list(self, res: LeaseList) -> None:
        self.out.write(f"found {len(res.ids)} leases\n")
        for lease_id in res.ids:
            self.out.write(lease_hex(lease_id) + "\n")

    def instances(self, rows: Sequence[dict[str, Any]]) -> None:
        self.out.writelines(" ".join(row) + "\n" for row in instance_rows(rows))

    def operator(self, model: str, ident: str, state: dict[str, Any], revision: int) -> None:
        what = "draining" if state["draining"] else "not draining"
        self.out.write(f"{model}/{ident}: {what} (revision {revision})\n")


class TablePrinter(SimplePrinter):
    """rich tables (240 columns when not on a terminal); what is no list of rows
    (watch events, an exported document, a backup's facts) prints as simple."""

    fmt = "table"

    def _table(self, columns: Sequence[str], rows: Sequence[Sequence[Any]]) -> None:
        from rich.console import Console
        from rich.table import Table

        table = Table(*columns)
        for row in rows:
            table.add_row(*(str(c) for c in row))
        width = None if self.out.isatty() else 240
        Console(file=self.out, soft_wrap=True, width=width).print(table)

    def get(self, res: GetResult, *, keys_only: bool = False, count_only: bool = False) -> None:
        if count_only:
            self._table(["count"], [[res.count]])
            return
        cols = ["key"] if keys_only else ["key", "value"]
        cols += ["create_revision", "mod_revision", "version"]
        rows = [
            [
                i.key,
                *([] if keys_only else [text_of(i.value)[0]]),
                i.create_revision,
                i.mod_revision,
                i.version,
            ]
            for i in res.kvs
        ]
        self._table(cols, rows)

    def put(self, res: PutResult) -> None:
        self._table(["revision"], [[res.header.revision]])

    def delete(self, res: DeleteResult) -> None:
        self._table(["deleted", "revision"], [[res.deleted, res.header.revision]])

    def members(self, members: Sequence[Member]) -> None:
        self._table(["name", "raft address", "client address"], member_rows(members))

    def status(self, resp: ClusterStatus) -> None:
        self._table(list(STATUS_COLUMNS), status_rows(resp))

    def health(self, states: Sequence[tuple[str, str]]) -> None:
        self._table(["endpoint", "health"], [[e, s] for e, s in states])

    def config_write(self, res: WriteResult, *, done: str, hint: str = "") -> None:
        rows = [
            [OP_SIGN[ch.op], ch.key, path or "-", shown(old), shown(new)]
            for ch in res.changes
            for path, old, new in field_diffs(ch)
        ]
        if rows:
            self._table(["op", "key", "field", "before", "after"], rows)
        self._summary(res, done, hint)

    def history(self, res: HistoryResult) -> None:
        rows = [
            [
                e.revision,
                iso_ms(e.ts_ms),
                e.identity or "-",
                e.event.type,
                e.event.kv.key,
                e.event.kv.version if e.event.type == "PUT" else "-",
                text_of(e.event.kv.value)[0] if e.event.type == "PUT" else "",
            ]
            for e in res.entries
        ]
        self._table(["revision", "time", "writer", "type", "key", "version", "value"], rows)

    def lease_grant(self, res: LeaseGrant) -> None:
        self._table(["id", "ttl"], [[lease_hex(res.id), res.ttl]])

    def lease_ttl(self, res: TimeToLive, *, keys: bool = False) -> None:
        cols = ["id", "ttl", "granted ttl", *(["keys"] if keys else [])]
        row = [lease_hex(res.id), res.ttl, res.granted_ttl, *([" ".join(res.keys)] if keys else [])]
        self._table(cols, [row])

    def lease_list(self, res: LeaseList) -> None:
        self._table(["id"], [[lease_hex(i)] for i in res.ids])

    def instances(self, rows: Sequence[dict[str, Any]]) -> None:
        self._table(list(INSTANCE_COLUMNS), instance_rows(rows))


class JsonPrinter(Printer):
    """One JSON object per line: the stable contract of docs/cli.md."""

    fmt = "json"

    def _json(self, obj: Any) -> None:
        self.out.write(json.dumps(obj, ensure_ascii=False) + "\n")

    def get(self, res: GetResult, *, keys_only: bool = False, count_only: bool = False) -> None:
        obj: dict[str, Any] = {"header": header_json(res.header)}
        if not count_only:
            obj["kvs"] = [kv_json(i, keys_only=keys_only) for i in res.kvs]
        obj["count"] = res.count
        if res.more:
            obj["more"] = True
        self._json(obj)

    def put(self, res: PutResult) -> None:
        obj: dict[str, Any] = {"header": header_json(res.header)}
        if res.prev_kv is not None:
            obj["prev_kv"] = kv_json(res.prev_kv)
        self._json(obj)

    def delete(self, res: DeleteResult) -> None:
        obj: dict[str, Any] = {"header": header_json(res.header), "deleted": res.deleted}
        if res.prev_kvs:
            obj["prev_kvs"] = [kv_json(i) for i in res.prev_kvs]
        self._json(obj)

    def watch(self, batch: WatchBatch, *, progress: bool = False) -> None:
        if batch.progress and progress:
            self._json({"type": "PROGRESS", "revision": batch.revision})
        for ev in batch.events:
            obj: dict[str, Any] = {"type": ev.type}
            obj.update(kv_json(ev.kv, keys_only=ev.type == "DELETE"))
            if ev.prev_kv is not None:
                obj["prev_kv"] = kv_json(ev.prev_kv)
            self._json(obj)
        self.out.flush()

    def members(self, members: Sequence[Member]) -> None:
        self._json(
            {"members": [dict(zip(MEMBER_FIELDS, r, strict=True)) for r in member_rows(members)]}
        )

    def status(self, resp: ClusterStatus) -> None:
        members = [status_json(m, resp.leader) for m in resp.members]
        self._json({"leader": resp.leader or None, "members": members})

    def health(self, states: Sequence[tuple[str, str]]) -> None:
        self._json(
            {
                "healthy": all(s == HEALTH_SERVING for _, s in states),
                "endpoints": [{"endpoint": e, "health": s} for e, s in states],
            }
        )

    def config_write(self, res: WriteResult, *, done: str, hint: str = "") -> None:
        self._json(
            {
                "header": header_json(res.header),
                "dry_run": res.dry_run,
                "read_revision": res.read_revision,
                "revision": res.revision,
                "changes": [change_json(ch) for ch in res.changes],
            }
        )

    def export(self, res: ExportResult) -> None:
        import yaml

        self._json(
            {
                "header": header_json(res.header),
                "revision": res.revision,
                "config": yaml.safe_load(res.document),
            }
        )

    def history(self, res: HistoryResult) -> None:
        obj: dict[str, Any] = {
            "header": header_json(res.header),
            "compact_revision": res.compact_revision,
            "entries": [history_json(e) for e in res.entries],
        }
        if res.more:
            obj["more"] = True
        self._json(obj)

    def backup(self, info: BackupInfo) -> None:
        self._json(backup_json(info))

    def lease_grant(self, res: LeaseGrant) -> None:
        self._json({"header": header_json(res.header), "id": lease_hex(res.id), "ttl": res.ttl})

    def lease_revoke(self, lease_id: int, header: Header) -> None:
        self._json({"header": header_json(header), "id": lease_hex(lease_id)})

    def lease_keepalive(self, lease_id: int, ttl: int) -> None:
        self._json({"id": lease_hex(lease_id), "ttl": ttl})
        self.out.flush()

    def lease_ttl(self, res: TimeToLive, *, keys: bool = False) -> None:
        obj: dict[str, Any] = {"header": header_json(res.header), "id": lease_hex(res.id)}
        obj.update(ttl=res.ttl, granted_ttl=res.granted_ttl)
        if keys:
            obj["keys"] = res.keys
        self._json(obj)

    def lease_list(self, res: LeaseList) -> None:
        leases = [{"id": lease_hex(i)} for i in res.ids]
        self._json({"header": header_json(res.header), "leases": leases})

    def instances(self, rows: Sequence[dict[str, Any]]) -> None:
        self._json({"instances": list(rows)})

    def operator(self, model: str, ident: str, state: dict[str, Any], revision: int) -> None:
        self._json({"model": model, "id": ident, "revision": revision, **state})


# -w NAME -> its printer; main's -w choices are these names.
PRINTERS: dict[str, type[Printer]] = {p.fmt: p for p in (SimplePrinter, JsonPrinter, TablePrinter)}
FORMATS = tuple(PRINTERS)


def printer(fmt: str, out: TextIO | None = None) -> Printer:
    """The printer for ``-w fmt`` (``KeyError`` for a format mcpctl does not know)."""
    return PRINTERS[fmt](out)
