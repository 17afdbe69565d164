"""etcd's errors, in one place: its gRPC codes and exact message strings.

etcd clients classify errors by these strings (clientv3's ``rpctypes``), so
the etcd API answers them verbatim. ``etcd_error`` turns an ``McpError`` the
node raised into etcd's equivalent where etcd has one; our own sentence is kept
where etcd has none (it says what to do instead). The status itself is set
by ``mcpctl.server.errors.rpc`` like for every other RPC.
"""

from __future__ import annotations

from mcpctl.errors import (
    Compacted,
    LeaseExists,
    LeaseNotFound,
    McpError,
    PermissionDenied,
    Unauthenticated,
)


class EtcdError(McpError):
    """An etcd error: a gRPC code name and etcd's message."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code  # type: ignore[misc]


EMPTY_KEY = ("INVALID_ARGUMENT", "etcdserver: key is not provided")
KEY_NOT_FOUND = ("INVALID_ARGUMENT", "etcdserver: key not found")
VALUE_PROVIDED = ("INVALID_ARGUMENT", "etcdserver: value is provided")
LEASE_PROVIDED = ("INVALID_ARGUMENT", "etcdserver: lease is provided")
TOO_MANY_OPS = ("INVALID_ARGUMENT", "etcdserver: too many operations in txn request")
DUPLICATE_KEY = ("INVALID_ARGUMENT", "etcdserver: duplicate key given in txn request")
COMPACTED = ("OUT_OF_RANGE", "etcdserver: mvcc: required revision has been compacted")
FUTURE_REV = ("OUT_OF_RANGE", "etcdserver: mvcc: required revision is a future revision")
LEASE_NOT_FOUND = ("NOT_FOUND", "etcdserver: requested lease not found")
LEASE_EXIST = ("FAILED_PRECONDITION", "etcdserver: lease already exists")
LEASE_TTL_TOO_LARGE = ("OUT_OF_RANGE", "etcdserver: too large lease TTL")
NOT_LEADER = ("UNAVAILABLE", "etcdserver: not leader")
PERMISSION_DENIED = ("PERMISSION_DENIED", "etcdserver: permission denied")
INVALID_AUTH_TOKEN = ("UNAUTHENTICATED", "etcdserver: invalid auth token")
AUTH_FAILED = (
    "INVALID_ARGUMENT",
    "etcdserver: authentication failed, invalid user ID or password",
)
AUTH_NOT_ENABLED = ("FAILED_PRECONDITION", "etcdserver: authentication is not enabled")
# Cancel reason of a create whose watch_id is in use on the stream (etcd's text).
DUPLICATE_WATCH_ID = "mvcc: duplicate watch ID provided on the WatchStream"


def error(kind: tuple[str, str]) -> EtcdError:
    return EtcdError(*kind)


def unimplemented(what: str) -> EtcdError:
    """A feature mcp-config does not serve: UNIMPLEMENTED with what to do instead."""
    return EtcdError("UNIMPLEMENTED", f"mcp-config: {what} (docs/etcd-compat.md)")


def etcd_error(e: McpError) -> McpError:
    """etcd's error for one of ours, or ours unchanged when etcd has no equivalent."""
    if isinstance(e, EtcdError):
        return e
    if isinstance(e, Compacted):
        return error(COMPACTED)
    if isinstance(e, LeaseNotFound):
        return error(LEASE_NOT_FOUND)
    if isinstance(e, LeaseExists):
        return error(LEASE_EXIST)
    if isinstance(e, PermissionDenied):
        return error(PERMISSION_DENIED)
    if isinstance(e, Unauthenticated):
        return error(INVALID_AUTH_TOKEN)
    return e
