"""A transaction's compares and operations, built without the wire types.

::

    from mcpctl import Compare, Op

    client.txn(
        compare=[Compare.mod_revision("/cfg/a") == 3, Compare.value("/cfg/b") != b"x"],
        success=[Op.put("/cfg/a", "new"), Op.delete("/cfg/old/", prefix=True)],
        failure=[Op.get("/cfg/a")],
    )

``Compare.<target>(key)`` names what to compare (``version``,
``create_revision``, ``mod_revision``, ``value``, ``count``) and an operator
(``==``, ``!=``, ``<``, ``>``) makes the ``Compare``; ``prefix=True``
compares every key under ``key``. A ``Compare`` is not a bool: using one in
an ``if`` raises ``TypeError`` (it is a condition for the cluster to check).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Literal

from mcpctl._proto.mcp.v1 import kv_pb2 as kv
from mcpctl.client._values import LeaseHandle, encode_key, encode_value, lease_id_of

Target = Literal["version", "create_revision", "mod_revision", "value", "count"]
Operator = Literal["==", "!=", "<", ">"]

_TARGETS: dict[str, kv.Compare.CompareTarget.ValueType] = {
    "version": kv.Compare.VERSION,
    "create_revision": kv.Compare.CREATE,
    "mod_revision": kv.Compare.MOD,
    "value": kv.Compare.VALUE,
    "count": kv.Compare.COUNT,
}
_RESULTS: dict[str, kv.Compare.CompareResult.ValueType] = {
    "==": kv.Compare.EQUAL,
    "!=": kv.Compare.NOT_EQUAL,
    "<": kv.Compare.LESS,
    ">": kv.Compare.GREATER,
}


class CompareOn:
    """What a compare looks at (``Compare.mod_revision(key)``), before its operator."""

    __slots__ = ("key", "prefix", "target")
    __hash__ = None  # type: ignore[assignment]  # == builds a Compare, so no hashing

    def __init__(self, target: Target, key: str | bytes, prefix: bool) -> None:
        self.target: Target = target
        self.key = encode_key(key)
        self.prefix = prefix

    def _make(self, op: Operator, operand: object) -> Compare:
        if self.target == "value":
            if not isinstance(operand, str | bytes):
                raise TypeError(f"Compare.value: compare with bytes or str, not {operand!r}")
            return Compare(self.key, self.target, op, encode_value(operand), self.prefix)
        if isinstance(operand, bool) or not isinstance(operand, int):
            raise TypeError(f"Compare.{self.target}: compare with an int, not {operand!r}")
        return Compare(self.key, self.target, op, operand, self.prefix)

    def __eq__(self, operand: object) -> Compare:  # type: ignore[override]
        return self._make("==", operand)

    def __ne__(self, operand: object) -> Compare:  # type: ignore[override]
        return self._make("!=", operand)

    def __lt__(self, operand: object) -> Compare:
        return self._make("<", operand)

    def __gt__(self, operand: object) -> Compare:
        return self._make(">", operand)


@dataclass(frozen=True, slots=True)
class Compare:
    """One condition of a txn: ``target`` of ``key`` ``op`` ``operand``."""

    key: bytes
    target: Target
    op: Operator
    operand: int | bytes
    prefix: bool = False

    def __bool__(self) -> bool:
        raise TypeError("a Compare is a condition for txn(compare=[...]), not a bool")

    @staticmethod
    def version(key: str | bytes, *, prefix: bool = False) -> CompareOn:
        """How many times the key was written since it was created (0: absent)."""
        return CompareOn("version", key, prefix)

    @staticmethod
    def create_revision(key: str | bytes, *, prefix: bool = False) -> CompareOn:
        return CompareOn("create_revision", key, prefix)

    @staticmethod
    def mod_revision(key: str | bytes, *, prefix: bool = False) -> CompareOn:
        """The revision of the key's last write (0: absent)."""
        return CompareOn("mod_revision", key, prefix)

    @staticmethod
    def value(key: str | bytes, *, prefix: bool = False) -> CompareOn:
        return CompareOn("value", key, prefix)

    @staticmethod
    def count(key: str | bytes) -> CompareOn:
        """How many keys are under the prefix ``key``."""
        return CompareOn("count", key, True)

    def to_proto(self) -> kv.Compare:
        msg = kv.Compare(
            key=self.key, target=_TARGETS[self.target], result=_RESULTS[self.op], prefix=self.prefix
        )
        setattr(msg, self.target, self.operand)
        return msg


@dataclass(frozen=True, slots=True)
class Op:
    """One operation of a txn branch: ``Op.put``, ``Op.delete`` or ``Op.get``."""

    kind: Literal["put", "delete", "get"]
    key: bytes
    value: bytes = b""
    prefix: bool = False
    lease: int = 0
    prev_kv: bool = False
    keys_only: bool = False
    count_only: bool = False
    limit: int = 0

    @classmethod
    def put(
        cls,
        key: str | bytes,
        value: str | bytes,
        *,
        lease: LeaseHandle | int | None = None,
        prev_kv: bool = False,
    ) -> Op:
        """A put; ``lease`` (a ``Lease`` or its id) attaches the key to it."""
        return cls(
            "put", encode_key(key), encode_value(value), lease=lease_id_of(lease), prev_kv=prev_kv
        )

    @classmethod
    def delete(cls, key: str | bytes, *, prefix: bool = False, prev_kv: bool = False) -> Op:
        """A delete of a key, or of every key under a prefix."""
        return cls("delete", encode_key(key), prefix=prefix, prev_kv=prev_kv)

    @classmethod
    def get(
        cls,
        key: str | bytes,
        *,
        prefix: bool = False,
        keys_only: bool = False,
        count_only: bool = False,
        limit: int = 0,
    ) -> Op:
        """A read, answered at the txn's revision."""
        return cls(
            "get",
            encode_key(key),
            prefix=prefix,
            keys_only=keys_only,
            count_only=count_only,
            limit=limit,
        )

    def to_proto(self) -> kv.RequestOp:
        if self.kind == "put":
            put = kv.PutRequest(
                key=self.key, value=self.value, lease=self.lease, prev_kv=self.prev_kv
            )
            return kv.RequestOp(request_put=put)
        if self.kind == "delete":
            delete = kv.DeleteRangeRequest(key=self.key, prefix=self.prefix, prev_kv=self.prev_kv)
            return kv.RequestOp(request_delete_range=delete)
        get = kv.RangeRequest(
            key=self.key,
            prefix=self.prefix,
            keys_only=self.keys_only,
            count_only=self.count_only,
            limit=self.limit,
        )
        return kv.RequestOp(request_range=get)


def txn_request(
    compare: Iterable[Compare | kv.Compare],
    success: Iterable[Op | kv.RequestOp],
    failure: Iterable[Op | kv.RequestOp],
    request_id: str,
) -> kv.TxnRequest:
    """The wire request of a txn; ``Compare``/``Op`` or wire messages (older callers)."""

    def ops(items: Iterable[Op | kv.RequestOp]) -> list[kv.RequestOp]:
        return [o.to_proto() if isinstance(o, Op) else o for o in items]

    return kv.TxnRequest(
        compare=[c.to_proto() if isinstance(c, Compare) else c for c in compare],
        success=ops(success),
        failure=ops(failure),
        request_id=request_id,
    )
