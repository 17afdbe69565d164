"""The audit line of an applied write: who, what, which revision; never a value.

``audit_applied`` writes one structured line (logger ``audit``) per write the
node applied, after the store answered; the node calls it from its write path.
"""

from __future__ import annotations

from mcpctl._proto.mcp.v1 import kv_pb2 as kv
from mcpctl._proto.mcp.v1 import raft_pb2 as raft
from mcpctl.server import auth
from mcpctl.server.logs import audit
from mcpctl.state import Applied


def audit_applied(request: raft.InternalRequest, applied: Applied) -> None:
    """One structured line per applied write: who, what, which revision. Values
    are never logged (they may hold secrets). A txn line names the keys written
    by the branch it took, the keys it compared and whether it succeeded; a
    txn without writes in either branch (compares and reads only) is a ``read``
    line with the keys it compared and read, not a ``write``."""
    which = request.WhichOneof("request") or "none"
    if which == "lease_checkpoint":
        return  # the leader's clock recording TTLs every few seconds: no key changes
    op = getattr(request, which) if which != "none" else None
    event = "write"
    keys: list[str] = []
    extra: dict[str, object] = {}
    if which in ("put", "delete_range"):
        keys = [_text(op.key)]  # type: ignore[union-attr]
    elif which == "txn":
        assert isinstance(op, kv.TxnRequest) and isinstance(applied.result, kv.TxnResponse)
        succeeded = applied.result.succeeded
        if _txn_writes(op):
            keys = _txn_keys(op, succeeded, ("request_put", "request_delete_range"))
            extra = {"compared": [_text(c.key) for c in op.compare], "succeeded": succeeded}
        else:
            event = "read"
            keys = [_text(c.key) for c in op.compare]
            keys += _txn_keys(op, succeeded, ("request_range",))
    elif which == "member":
        keys = [f"member:{request.member.name}"]
    elif which in ("lease_grant", "lease_revoke"):
        keys = [f"lease:{op.id}"]  # type: ignore[union-attr]
    elif which == "lease_expire":
        keys = [f"lease:{i}" for i in request.lease_expire.ids]
    audit.info(
        event,
        identity=auth.current_identity.get().name,
        op=which,
        keys=keys,
        prefix=bool(getattr(op, "prefix", False)),
        revision=applied.revision,
        request_id=getattr(op, "request_id", ""),
        duplicate=applied.duplicate,
        **extra,
    )


def _txn_writes(txn: kv.TxnRequest) -> bool:
    """Does either branch of the txn put or delete?"""
    return any(
        o.WhichOneof("request") in ("request_put", "request_delete_range")
        for o in [*txn.success, *txn.failure]
    )


def _txn_keys(txn: kv.TxnRequest, succeeded: bool, kinds: tuple[str, ...]) -> list[str]:
    """The keys of the ops of these kinds in the branch the txn took."""
    keys = []
    for o in txn.success if succeeded else txn.failure:
        inner = o.WhichOneof("request")
        if inner in kinds:
            keys.append(_text(getattr(o, inner).key))
    return keys


def _text(key: bytes) -> str:
    return key.decode("utf-8", "replace")
