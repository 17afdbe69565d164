"""The typed txn builders (``Compare``, ``Op``) and typed results: what a
service writes without importing ``mcpctl._proto``, and the wire it becomes."""

from __future__ import annotations

import pytest

import mcpctl
from mcpctl._proto.mcp.v1 import kv_pb2 as kv
from mcpctl.client import Compare, DeleteResult, GetResult, Op, PutResult, TxnResult
from mcpctl.client._txn import txn_request


@pytest.mark.parametrize(
    ("built", "expected"),
    [
        (
            Compare.mod_revision("/a") == 3,
            kv.Compare(key=b"/a", target=kv.Compare.MOD, result=kv.Compare.EQUAL, mod_revision=3),
        ),
        (
            Compare.value("/a") != b"x",
            kv.Compare(key=b"/a", target=kv.Compare.VALUE, result=kv.Compare.NOT_EQUAL, value=b"x"),
        ),
        (
            Compare.value("/a") == "text",
            kv.Compare(key=b"/a", target=kv.Compare.VALUE, result=kv.Compare.EQUAL, value=b"text"),
        ),
        (
            Compare.version("/a") < 2,
            kv.Compare(key=b"/a", target=kv.Compare.VERSION, result=kv.Compare.LESS, version=2),
        ),
        (
            Compare.create_revision(b"/a") > 0,
            kv.Compare(
                key=b"/a", target=kv.Compare.CREATE, result=kv.Compare.GREATER, create_revision=0
            ),
        ),
        (
            Compare.mod_revision("/p/", prefix=True) < 9,
            kv.Compare(
                key=b"/p/",
                target=kv.Compare.MOD,
                result=kv.Compare.LESS,
                mod_revision=9,
                prefix=True,
            ),
        ),
        (
            Compare.count("/p/") == 4,
            kv.Compare(
                key=b"/p/", target=kv.Compare.COUNT, result=kv.Compare.EQUAL, count=4, prefix=True
            ),
        ),
    ],
    ids=lambda v: "",
)
def test_a_compare_becomes_the_wire_compare(built: Compare, expected: kv.Compare) -> None:
    """Each target and operator lands in its wire field; version 0 (a key that
    must be absent) is set explicitly, not left as "no operand"."""
    wire = built.to_proto()
    assert wire == expected
    assert wire.WhichOneof("target_union") == expected.WhichOneof("target_union")


def test_an_operand_of_the_wrong_type_is_refused() -> None:
    """Revisions and versions compare with ints, values with bytes or str."""
    with pytest.raises(TypeError, match="compare with an int"):
        _ = Compare.mod_revision("/a") == b"3"
    with pytest.raises(TypeError, match="compare with an int"):
        _ = Compare.version("/a") == True  # noqa: E712  (a bool is not a version)
    with pytest.raises(TypeError, match="compare with bytes or str"):
        _ = Compare.value("/a") == 3


def test_a_compare_is_not_a_bool() -> None:
    """``if Compare.value(k) == b"x":`` is a bug (the cluster checks it): it raises."""
    with pytest.raises(TypeError, match="not a bool"):
        bool(Compare.value("/a") == b"x")


def test_ops_become_the_wire_request_ops() -> None:
    assert Op.put("/a", "v", lease=7, prev_kv=True).to_proto() == kv.RequestOp(
        request_put=kv.PutRequest(key=b"/a", value=b"v", lease=7, prev_kv=True)
    )
    assert Op.delete("/p/", prefix=True).to_proto() == kv.RequestOp(
        request_delete_range=kv.DeleteRangeRequest(key=b"/p/", prefix=True)
    )
    assert Op.get("/p/", prefix=True, limit=5).to_proto() == kv.RequestOp(
        request_range=kv.RangeRequest(key=b"/p/", prefix=True, limit=5)
    )


def test_a_txn_request_takes_typed_and_wire_forms_together() -> None:
    """Older callers pass wire messages; both forms make the same request."""
    wire_op = kv.RequestOp(request_put=kv.PutRequest(key=b"/b", value=b"w"))
    req = txn_request([Compare.version("/a") == 0], [Op.put("/a", "v"), wire_op], [], "rid")
    assert req.compare[0].target == kv.Compare.VERSION
    assert [o.request_put.key for o in req.success] == [b"/a", b"/b"]
    assert req.request_id == "rid"


def test_txn_responses_are_typed_per_op() -> None:
    header = kv.ResponseHeader(revision=5)
    resp = kv.TxnResponse(
        header=header,
        succeeded=False,
        responses=[
            kv.ResponseOp(
                response_range=kv.RangeResponse(
                    header=header, kvs=[kv.KeyValue(key=b"/a", value=b"v", mod_revision=4)], count=1
                )
            ),
            kv.ResponseOp(response_put=kv.PutResponse(header=header)),
            kv.ResponseOp(response_delete_range=kv.DeleteRangeResponse(header=header, deleted=2)),
        ],
    )
    result = TxnResult.of(resp)
    got, put, deleted = result.responses
    assert isinstance(got, GetResult) and got.kvs[0].key == "/a" and got.kvs[0].mod_revision == 4
    assert isinstance(put, PutResult) and put.prev_kv is None and put.revision == 5
    assert isinstance(deleted, DeleteResult) and deleted.deleted == 2


def test_the_package_exports_the_sdk_and_every_error_class() -> None:
    """``from mcpctl import ...`` is enough: clients, builders, the error tree."""
    for name in mcpctl.__all__:
        assert getattr(mcpctl, name) is not None, name
    assert issubclass(mcpctl.OutcomeUnknown, mcpctl.Unavailable)
    assert mcpctl.Compare is Compare and mcpctl.Op is Op
