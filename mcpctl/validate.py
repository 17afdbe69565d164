"""Input checks for every client request, before anything is proposed.

Each ``check_*`` raises ``InvalidArgument`` (or ``ResourceExhausted`` for
size limits) with a message that names the field; it never trusts the
client. The state machine assumes requests passed these checks.
"""

from __future__ import annotations

import re

from mcpctl import limits
from mcpctl._proto.mcp.v1 import kv_pb2 as kv
from mcpctl._proto.mcp.v1 import raft_pb2 as raft
from mcpctl._proto.mcp.v1 import watch_pb2 as watch
from mcpctl.errors import InvalidArgument, ResourceExhausted


def check_key(key: bytes, *, field: str = "key", allow_empty: bool = False) -> None:
    if not key:
        if allow_empty:
            return
        raise InvalidArgument(f"{field}: must not be empty")
    if len(key) > limits.KEY_BYTES_MAX:
        raise InvalidArgument(
            f"{field}: {len(key)} bytes is over the limit of {limits.KEY_BYTES_MAX}"
        )
    if b"\x00" in key:
        raise InvalidArgument(f"{field}: must not contain NUL")
    if key.isascii():  # ASCII is UTF-8: skip the decode (most keys)
        return
    try:
        key.decode("utf-8")
    except UnicodeDecodeError:
        raise InvalidArgument(f"{field}: not valid UTF-8") from None


def check_request_id(request_id: str) -> None:
    if len(request_id) > limits.REQUEST_ID_BYTES_MAX or not request_id.isprintable():
        raise InvalidArgument(
            f"request_id: at most {limits.REQUEST_ID_BYTES_MAX} printable characters"
        )
    if not request_id.isascii():
        raise InvalidArgument("request_id: must be ASCII")


def check_range(req: kv.RangeRequest, *, field: str = "range") -> None:
    # An empty key is allowed only with prefix (= every key).
    check_key(req.key, field=f"{field}.key", allow_empty=req.prefix)
    if req.limit < 0:
        raise InvalidArgument(f"{field}.limit: must not be negative")
    if req.revision < 0:
        raise InvalidArgument(f"{field}.revision: must not be negative")


def check_put(req: kv.PutRequest, value_bytes_max: int, *, field: str = "put") -> None:
    check_key(req.key, field=f"{field}.key")
    if len(req.value) > value_bytes_max:
        raise ResourceExhausted(
            f"{field}.value: {len(req.value)} bytes is over the limit of {value_bytes_max}"
        )
    if req.HasField("expected_mod_revision") and req.expected_mod_revision < 0:
        raise InvalidArgument(f"{field}.expected_mod_revision: must not be negative")
    if req.lease < 0:
        raise InvalidArgument(f"{field}.lease: must not be negative (0 = no lease)")
    check_request_id(req.request_id)


def check_delete(req: kv.DeleteRangeRequest, *, field: str = "delete") -> None:
    check_key(req.key, field=f"{field}.key", allow_empty=req.prefix)
    check_request_id(req.request_id)


def check_txn(req: kv.TxnRequest, value_bytes_max: int) -> None:
    check_request_id(req.request_id)
    if len(req.compare) > limits.TXN_COMPARES_MAX:
        raise InvalidArgument(f"txn.compare: more than {limits.TXN_COMPARES_MAX} compares")
    for i, c in enumerate(req.compare):
        check_key(c.key, field=f"txn.compare[{i}].key", allow_empty=c.prefix)
        if c.target not in kv.Compare.CompareTarget.values():
            raise InvalidArgument(f"txn.compare[{i}].target: unknown target {c.target}")
        if c.result not in kv.Compare.CompareResult.values():
            raise InvalidArgument(f"txn.compare[{i}].result: unknown result {c.result}")
    for branch in ("success", "failure"):
        ops = getattr(req, branch)
        if len(ops) > limits.TXN_OPS_MAX:
            raise InvalidArgument(f"txn.{branch}: more than {limits.TXN_OPS_MAX} ops")
        written: list[tuple[bytes, bool]] = []
        for i, op in enumerate(ops):
            field = f"txn.{branch}[{i}]"
            which = op.WhichOneof("request")
            if which == "request_put":
                put = op.request_put
                check_put(put, value_bytes_max, field=field)
                if put.HasField("expected_mod_revision"):
                    raise InvalidArgument(
                        f"{field}.expected_mod_revision: not allowed in a txn (use a compare)"
                    )
                if put.request_id:
                    raise InvalidArgument(f"{field}.request_id: set it on the txn instead")
                written.append((put.key, False))
            elif which == "request_delete_range":
                dr = op.request_delete_range
                check_delete(dr, field=field)
                if dr.request_id:
                    raise InvalidArgument(f"{field}.request_id: set it on the txn instead")
                written.append((dr.key, dr.prefix))
            elif which == "request_range":
                check_range(op.request_range, field=field)
                if op.request_range.revision or op.request_range.serializable:
                    raise InvalidArgument(
                        f"{field}: revision and serializable are not allowed inside a txn"
                    )
            else:
                raise InvalidArgument(f"{field}: empty op")
        _check_disjoint(written, branch)


def _check_disjoint(written: list[tuple[bytes, bool]], branch: str) -> None:
    """A txn may not write the same key twice (as in etcd)."""
    for i, (a, a_prefix) in enumerate(written):
        for b, b_prefix in written[i + 1 :]:
            overlap = a == b or (a_prefix and b.startswith(a)) or (b_prefix and a.startswith(b))
            if overlap:
                shown = a.decode("utf-8", "replace")
                raise InvalidArgument(f"txn.{branch}: duplicate key {shown!r} in one txn")


def check_lease_grant(req: kv.LeaseGrantRequest) -> None:
    """A client's grant: id 0 lets the node choose; a TTL below the minimum is
    raised by the node (etcd does both), so only the upper bound is checked."""
    if req.id < 0:
        raise InvalidArgument("lease_grant.id: must not be negative (0 = let the node choose)")
    if req.ttl < 0:
        raise InvalidArgument("lease_grant.ttl: must not be negative")
    if req.ttl > limits.LEASE_TTL_S_MAX:
        raise InvalidArgument(
            f"lease_grant.ttl: too large lease TTL (max {limits.LEASE_TTL_S_MAX} s)"
        )


def check_client_lease_grant(req: kv.LeaseGrantRequest) -> None:
    """A client's Grant: as ``check_lease_grant``, and a TTL of 0 is refused too
    (the proto's contract; below the minimum but > 0 is raised by the node)."""
    check_lease_grant(req)
    if req.ttl == 0:
        raise InvalidArgument("lease_grant.ttl: must be > 0")


def check_lease_revoke(req: kv.LeaseRevokeRequest) -> None:
    if req.id <= 0:
        raise InvalidArgument("lease_revoke.id: must be > 0")


def check_lease_expire(req: raft.LeaseExpireRequest) -> None:
    """The leader's own proposal; the state machine runs this check too."""
    if len(req.ids) > limits.LEASE_EXPIRE_BATCH_MAX:
        raise InvalidArgument(
            f"lease_expire.ids: {len(req.ids)} is over the limit of "
            f"{limits.LEASE_EXPIRE_BATCH_MAX} (LEASE_EXPIRE_BATCH_MAX)"
        )
    if any(lease_id <= 0 for lease_id in req.ids):
        raise InvalidArgument("lease_expire.ids: every id must be > 0")
    if req.proposer_term <= 0:
        raise InvalidArgument("lease_expire.proposer_term: must be > 0")


def check_lease_checkpoint(req: raft.LeaseCheckpointRequest) -> None:
    """The leader's own proposal; the state machine runs this check too."""
    if len(req.checkpoints) > limits.LEASE_CHECKPOINT_BATCH_MAX:
        raise InvalidArgument(
            f"lease_checkpoint.checkpoints: {len(req.checkpoints)} is over the limit of "
            f"{limits.LEASE_CHECKPOINT_BATCH_MAX} (LEASE_CHECKPOINT_BATCH_MAX)"
        )
    for i, cp in enumerate(req.checkpoints):
        if cp.id <= 0:
            raise InvalidArgument(f"lease_checkpoint.checkpoints[{i}].id: must be > 0")
        if cp.remaining_ms < 0:
            raise InvalidArgument(
                f"lease_checkpoint.checkpoints[{i}].remaining_ms: must not be negative"
            )
    if req.proposer_term <= 0:
        raise InvalidArgument("lease_checkpoint.proposer_term: must be > 0")


def check_compaction(req: kv.CompactionRequest) -> None:
    if req.revision < 0:
        raise InvalidArgument("compact.revision: must not be negative")


def check_watch(req: watch.WatchRequest) -> None:
    check_key(req.key, field="watch.key", allow_empty=req.prefix)
    if req.start_revision < 0:
        raise InvalidArgument("watch.start_revision: must not be negative")
    interval = req.progress_interval_ms
    if interval and not (
        limits.WATCH_PROGRESS_INTERVAL_MS_MIN <= interval <= limits.WATCH_PROGRESS_INTERVAL_MS_MAX
    ):
        raise InvalidArgument(
            f"watch.progress_interval_ms: 0 (default) or "
            f"{limits.WATCH_PROGRESS_INTERVAL_MS_MIN}..{limits.WATCH_PROGRESS_INTERVAL_MS_MAX}"
        )


def check_member(name: str, raft_address: str, client_address: str) -> None:
    if not re.fullmatch(r"[A-Za-z0-9._-]{1,64}", name):
        raise InvalidArgument("member.name: 1..64 characters of A-Z a-z 0-9 . _ -")
    for field, value in (("raft_address", raft_address), ("client_address", client_address)):
        host, sep, port = value.rpartition(":")
        if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
            raise InvalidArgument(f"member.{field}: {value!r} is not host:port")


HISTORY_LIMIT_DEFAULT = 1000


def check_history(req: kv.HistoryRequest) -> None:
    check_key(req.key, field="history.key", allow_empty=req.prefix)
    if req.limit < 0:
        raise InvalidArgument("history.limit: must not be negative")
