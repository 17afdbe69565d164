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
    FailedPrecondition,
    InvalidArgument,
    LeaseExists,
    LeaseNotFound,
    McpError,
    NotFound,
    PermissionDenied,
    Unauthenticated,
    Unavailable,
)


class OutOfRange(McpError):
    """etcd's OUT_OF_RANGE (compacted or future revision, too large TTL)."""

    code = "OUT_OF_RANGE"
    kind = "out_of_range"


class Unimplemented(McpError):
    """Not served by mcp-config; the message says what to use instead."""

    code = "UNIMPLEMENTED"
    kind = "unimplemented"


# The class raised for each gRPC code of etcd's errors.
_CLASSES: dict[str, type[McpError]] = {
    "INVALID_ARGUMENT": InvalidArgument,
    "NOT_FOUND": NotFound,
    "FAILED_PRECONDITION": FailedPrecondition,
    "UNAVAILABLE": Unavailable,
    "PERMISSION_DENIED": PermissionDenied,
    "UNAUTHENTICATED": Unauthenticated,
    "OUT_OF_RANGE": OutOfRange,
    "UNIMPLEMENTED": Unimplemented,
}


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


def error(kind: tuple[str, str]) -> McpError:
    """etcd's error ``kind`` (one of the pairs above): its code and exact message."""
    code, message = kind
    return _CLASSES[code](message)


def unimplemented(what: str) -> McpError:
    """A feature mcp-config does not serve: UNIMPLEMENTED with what to do instead."""
    return Unimplemented(f"mcp-config: {what} (docs/etcd-compat.md)")


def etcd_error(e: McpError) -> McpError:
    """etcd's error for one of ours, or ours unchanged when etcd has no equivalent."""
    if e.message.startswith(("etcdserver: ", "mvcc: ", "mcp-config: ")):
        return e  # already etcd's (or says it is ours on purpose)
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
