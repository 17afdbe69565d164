"""Operations of a ``Client.txn``, built without touching the wire types.

``put_op`` and ``delete_op`` return the request ops ``txn(success=..., failure=...)``
takes; ``put_op(lease=...)`` attaches the key to a lease as ``put`` does.
"""

from __future__ import annotations

from mcpctl._proto.mcp.v1 import kv_pb2 as kv
from mcpctl.client._values import LeaseHandle, encode_key, encode_value, lease_id_of


def put_op(
    key: str | bytes,
    value: str | bytes,
    *,
    lease: LeaseHandle | int | None = None,
    prev_kv: bool = False,
) -> kv.RequestOp:
    """A put inside a txn; ``lease`` (a ``Lease`` or its id) attaches the key to it."""
    put = kv.PutRequest(
        key=encode_key(key), value=encode_value(value), lease=lease_id_of(lease), prev_kv=prev_kv
    )
    return kv.RequestOp(request_put=put)


def delete_op(key: str | bytes, *, prefix: bool = False, prev_kv: bool = False) -> kv.RequestOp:
    """A delete (of a key, or of every key under a prefix) inside a txn."""
    delete = kv.DeleteRangeRequest(key=encode_key(key), prefix=prefix, prev_kv=prev_kv)
    return kv.RequestOp(request_delete_range=delete)
