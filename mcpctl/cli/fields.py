"""How results become JSON fields and text: the pieces every printer of
``output`` shares (pure functions, no I/O).

Keys and values are text; a value that is not UTF-8 is base64 (``text_of``
says so). Lease ids are 16 hex digits, as etcdctl prints them and as the CLI
accepts them (``leaseid``).
"""

from __future__ import annotations

import base64
import json
from typing import TYPE_CHECKING, Any

from mcpctl.cli.leaseid import lease_hex
from mcpctl.client import Header, KeyValue
from mcpctl.status_view import status_json

if TYPE_CHECKING:
    from collections.abc import Sequence

    from mcpctl.backup import BackupInfo
    from mcpctl.client import ClusterStatus, Member
    from mcpctl.client.mcp import HistoryEntry, WriteResult
    from mcpctl.mcp.plan import Change


def header_json(h: Header) -> dict[str, Any]:
    return {
        "cluster_id": h.cluster_id,
        "member_id": h.member_id,
        "member": h.member_name,
        "revision": h.revision,
        "raft_term": h.raft_term,
    }


def text_of(value: bytes) -> tuple[str, bool]:
    try:
        return value.decode("utf-8"), False
    except UnicodeDecodeError:
        return base64.b64encode(value).decode("ascii"), True


def kv_json(item: KeyValue, *, keys_only: bool = False) -> dict[str, Any]:
    out: dict[str, Any] = {"key": item.key}
    if not keys_only:
        text, is_b64 = text_of(item.value)
        out["value"] = text
        if is_b64:
            out["value_encoding"] = "base64"
    out["create_revision"] = item.create_revision
    out["mod_revision"] = item.mod_revision
    out["version"] = item.version
    if item.lease:
        out["lease"] = lease_hex(item.lease)
    return out


def backup_json(info: BackupInfo) -> dict[str, Any]:
    return {"revision": info.revision, "bytes": info.size, "sha256": info.sha256, "keys": info.keys}


# -- the MCP layer ----------------------------------------------------------------
OP_SIGN = {"add": "+", "change": "~", "delete": "-"}


def iso_ms(ts_ms: int) -> str:
    """Milliseconds since the epoch as ISO 8601 UTC (``2026-01-02T03:04:05.678Z``)."""
    import datetime

    when = datetime.datetime.fromtimestamp(ts_ms / 1000, tz=datetime.UTC)
    return when.strftime("%Y-%m-%dT%H:%M:%S.") + f"{ts_ms % 1000:03d}Z"


def change_json(ch: Change) -> dict[str, Any]:
    out: dict[str, Any] = {"op": ch.op, "key": ch.key}
    for name, value in (("value", ch.value), ("prev_value", ch.prev_value)):
        if value is not None:
            text, is_b64 = text_of(value)
            out[name] = text
            if is_b64:
                out[f"{name}_encoding"] = "base64"
    return out


def history_json(e: HistoryEntry) -> dict[str, Any]:
    obj: dict[str, Any] = {
        "revision": e.revision,
        "ts_ms": e.ts_ms,
        "time": iso_ms(e.ts_ms),
        "writer": e.identity,
    }
    obj["type"] = e.event.type
    obj.update(kv_json(e.event.kv, keys_only=e.event.type == "DELETE"))
    return obj


def write_summary(res: WriteResult, done: str) -> str:
    n = len(res.changes)
    count = f"{n} change{'' if n == 1 else 's'}"
    if res.dry_run:
        return f"dry run: {count} against revision {res.read_revision}; nothing written"
    if res.revision == 0:
        return f"no changes (revision {res.read_revision})"
    return f"{done}: {count} at revision {res.revision}"


def field_diffs(ch: Change) -> list[tuple[str, Any, Any]]:
    from mcpctl.mcp.plan import field_changes

    return [] if ch.op == "delete" else list(field_changes(ch))


def shown(value: Any) -> str:
    """A field value as JSON text (strings quoted); ``(unset)`` when absent."""
    if value is None:
        return "(unset)"
    if isinstance(value, bytes):
        return text_of(value)[0]
    return json.dumps(value, ensure_ascii=False)


# The members list's JSON fields, in column order.
MEMBER_FIELDS = ("name", "raft_address", "client_address")


def member_rows(members: Sequence[Member]) -> list[list[str]]:
    return [[m.name, m.raft_address, m.client_address] for m in members]


def status_rows(resp: ClusterStatus) -> list[list[str]]:
    members = [status_json(m, resp.leader) for m in resp.members]
    return [[cell(m[key]) for key in STATUS_COLUMNS.values()] for m in members]


# The one grpc.health.v1 state `mcpctl health` counts as healthy.
HEALTH_SERVING = "SERVING"

# Table/simple column -> JSON field.
STATUS_COLUMNS = {
    "node": "id",
    "endpoint": "endpoint",
    "role": "role",
    "term": "term",
    "commit": "commit_index",
    "applied": "applied_index",
    "behind": "entries_behind",
    "lag ms": "lag_ms",
    "last contact ms": "last_contact_ms",
    "health": "health",
}


# The instances table's columns -> Row.json fields (mcpctl/fleet/operator.py).
INSTANCE_COLUMNS = dict(
    zip(
        ("model", "id", "endpoint", "healthy", "in-flight", "weight", "ttl left", "draining"),
        ("model", "id", "endpoint", "healthy", "in_flight", "weight", "ttl", "draining"),
        strict=True,
    )
)


def instance_rows(rows: Sequence[dict[str, Any]]) -> list[list[str]]:
    return [[cell(r.get(k)) for k in INSTANCE_COLUMNS.values()] for r in rows]


def cell(value: Any) -> str:
    return "-" if value is None else str(value)
