"""Unit tests for request validation (mcpctl.validate).

Every check in validate.py has a test that trips it and names the field in
the error message, plus a test at the boundary that still passes.
"""

from __future__ import annotations

import pytest

from mcpctl import limits, validate
from mcpctl._proto.mcp.v1 import kv_pb2 as kv
from mcpctl.errors import InvalidArgument, ResourceExhausted

VALUE_MAX = 16  # a small value limit keeps the tests readable


def op_put(key: bytes, value: bytes = b"v", **fields: object) -> kv.RequestOp:
    req = kv.PutRequest(key=key, value=value)
    for name, val in fields.items():
        setattr(req, name, val)
    return kv.RequestOp(request_put=req)


def op_del(key: bytes, *, prefix: bool = False, request_id: str = "") -> kv.RequestOp:
    return kv.RequestOp(
        request_delete_range=kv.DeleteRangeRequest(key=key, prefix=prefix, request_id=request_id)
    )


def op_get(key: bytes, *, prefix: bool = False, revision: int = 0) -> kv.RequestOp:
    return kv.RequestOp(request_range=kv.RangeRequest(key=key, prefix=prefix, revision=revision))


def check_txn(
    success: list[kv.RequestOp] | None = None,
    failure: list[kv.RequestOp] | None = None,
    compare: list[kv.Compare] | None = None,
    request_id: str = "",
) -> None:
    req = kv.TxnRequest(
        compare=compare or [], success=success or [], failure=failure or [], request_id=request_id
    )
    validate.check_txn(req, VALUE_MAX)


# ---------------------------------------------------------------------- keys
def test_empty_key_is_rejected() -> None:
    """An empty key is invalid where a key is required."""
    with pytest.raises(InvalidArgument, match="key: must not be empty"):
        validate.check_key(b"")


def test_empty_key_allowed_when_asked() -> None:
    """allow_empty lets an empty key through (prefix over all keys)."""
    validate.check_key(b"", allow_empty=True)


def test_key_at_the_size_limit_is_accepted() -> None:
    """A key of exactly KEY_BYTES_MAX bytes is valid."""
    validate.check_key(b"k" * limits.KEY_BYTES_MAX)


def test_key_over_the_size_limit_is_rejected() -> None:
    """A key of KEY_BYTES_MAX+1 bytes is invalid and the message gives the size."""
    with pytest.raises(InvalidArgument, match="key: 1025 bytes is over the limit of 1024"):
        validate.check_key(b"k" * (limits.KEY_BYTES_MAX + 1))


def test_key_size_is_counted_in_bytes_not_characters() -> None:
    """A key of 513 two-byte characters (1026 bytes) is over the limit."""
    with pytest.raises(InvalidArgument, match="1026 bytes"):
        validate.check_key(("é" * 513).encode())


def test_key_with_nul_is_rejected() -> None:
    """A NUL byte anywhere in a key is invalid."""
    with pytest.raises(InvalidArgument, match="must not contain NUL"):
        validate.check_key(b"/a\x00b")


def test_key_that_is_not_utf8_is_rejected() -> None:
    """A key that does not decode as UTF-8 is invalid."""
    with pytest.raises(InvalidArgument, match="not valid UTF-8"):
        validate.check_key(b"/a\xff")


def test_non_ascii_utf8_key_is_accepted() -> None:
    """Keys are UTF-8 text: non-ASCII characters are fine."""
    validate.check_key("/ключ/ü".encode())


def test_key_error_names_the_field() -> None:
    """The message names the field passed in, e.g. put.key."""
    with pytest.raises(InvalidArgument, match=r"^put\.key: must not be empty$"):
        validate.check_put(kv.PutRequest(key=b"", value=b"x"), VALUE_MAX)


# ---------------------------------------------------------------- request ids
@pytest.mark.parametrize("request_id", ["", "r1", "x" * limits.REQUEST_ID_BYTES_MAX, "a b-c_d:1"])
def test_good_request_ids_are_accepted(request_id: str) -> None:
    """Empty (no id) and up to 64 printable ASCII characters are valid ids."""
    validate.check_request_id(request_id)


@pytest.mark.parametrize(
    ("request_id", "message"),
    [
        pytest.param("x" * (limits.REQUEST_ID_BYTES_MAX + 1), "at most 64 printable", id="long"),
        pytest.param("r\n1", "at most 64 printable", id="newline"),
        pytest.param("r\x001", "at most 64 printable", id="nul"),
        pytest.param("r\x7f", "at most 64 printable", id="del"),
        pytest.param("ré", "must be ASCII", id="non-ascii"),
    ],
)
def test_bad_request_ids_are_rejected(request_id: str, message: str) -> None:
    """Too long, non-printable or non-ASCII request ids are invalid."""
    with pytest.raises(InvalidArgument, match=f"request_id: {message}"):
        validate.check_request_id(request_id)


def test_put_checks_its_request_id() -> None:
    """check_put rejects a bad request id."""
    with pytest.raises(InvalidArgument, match="request_id"):
        validate.check_put(kv.PutRequest(key=b"/a", request_id="bad\tid"), VALUE_MAX)


def test_delete_checks_its_request_id() -> None:
    """check_delete rejects a bad request id."""
    with pytest.raises(InvalidArgument, match="request_id"):
        validate.check_delete(kv.DeleteRangeRequest(key=b"/a", request_id="é"))


def test_txn_checks_its_request_id() -> None:
    """check_txn rejects a bad request id on the txn itself."""
    with pytest.raises(InvalidArgument, match="request_id"):
        check_txn(request_id="x" * 65)


# ---------------------------------------------------------------------- range
def test_range_of_empty_key_needs_prefix() -> None:
    """An empty range key is only valid with prefix (= all keys)."""
    validate.check_range(kv.RangeRequest(key=b"", prefix=True))
    with pytest.raises(InvalidArgument, match=r"range\.key: must not be empty"):
        validate.check_range(kv.RangeRequest(key=b""))


def test_range_key_is_checked() -> None:
    """A range key goes through the key checks (here: NUL)."""
    with pytest.raises(InvalidArgument, match=r"range\.key: must not contain NUL"):
        validate.check_range(kv.RangeRequest(key=b"\x00", prefix=True))


def test_range_negative_limit_is_rejected() -> None:
    """A negative limit is invalid; zero means no limit."""
    validate.check_range(kv.RangeRequest(key=b"/a", limit=0))
    with pytest.raises(InvalidArgument, match=r"range\.limit: must not be negative"):
        validate.check_range(kv.RangeRequest(key=b"/a", limit=-1))


def test_range_negative_revision_is_rejected() -> None:
    """A negative revision is invalid; zero means latest."""
    validate.check_range(kv.RangeRequest(key=b"/a", revision=0))
    with pytest.raises(InvalidArgument, match=r"range\.revision: must not be negative"):
        validate.check_range(kv.RangeRequest(key=b"/a", revision=-3))


# ------------------------------------------------------------------------ put
def test_put_value_at_the_limit_is_accepted() -> None:
    """A value of exactly value_bytes_max bytes is valid."""
    validate.check_put(kv.PutRequest(key=b"/a", value=b"v" * VALUE_MAX), VALUE_MAX)


def test_put_value_over_the_limit_is_resource_exhausted() -> None:
    """A value over value_bytes_max is ResourceExhausted (not InvalidArgument)."""
    with pytest.raises(ResourceExhausted, match=r"put\.value: 17 bytes is over the limit of 16"):
        validate.check_put(kv.PutRequest(key=b"/a", value=b"v" * (VALUE_MAX + 1)), VALUE_MAX)


def test_put_empty_value_is_accepted() -> None:
    """An empty value is a valid value."""
    validate.check_put(kv.PutRequest(key=b"/a", value=b""), VALUE_MAX)


def test_put_negative_expected_mod_revision_is_rejected() -> None:
    """expected_mod_revision may be 0 (must not exist) or positive, not negative."""
    validate.check_put(kv.PutRequest(key=b"/a", expected_mod_revision=0), VALUE_MAX)
    with pytest.raises(InvalidArgument, match=r"put\.expected_mod_revision: must not be negative"):
        validate.check_put(kv.PutRequest(key=b"/a", expected_mod_revision=-1), VALUE_MAX)


# --------------------------------------------------------------------- delete
def test_delete_of_empty_key_needs_prefix() -> None:
    """An empty delete key is only valid with prefix (delete everything)."""
    validate.check_delete(kv.DeleteRangeRequest(key=b"", prefix=True))
    with pytest.raises(InvalidArgument, match=r"delete\.key: must not be empty"):
        validate.check_delete(kv.DeleteRangeRequest(key=b""))


def test_delete_key_is_checked() -> None:
    """A delete key goes through the key checks (here: non-UTF-8)."""
    with pytest.raises(InvalidArgument, match=r"delete\.key: not valid UTF-8"):
        validate.check_delete(kv.DeleteRangeRequest(key=b"\xc3"))


# ----------------------------------------------------------------- compaction
def test_compaction_negative_revision_is_rejected() -> None:
    """A negative compaction revision is invalid; zero is allowed."""
    validate.check_compaction(kv.CompactionRequest(revision=0))
    with pytest.raises(InvalidArgument, match=r"compact\.revision: must not be negative"):
        validate.check_compaction(kv.CompactionRequest(revision=-1))


# ------------------------------------------------------------------------ txn
def test_well_formed_txn_is_accepted() -> None:
    """A txn with compares and disjoint writes in each branch passes."""
    check_txn(
        success=[op_put(b"/a"), op_del(b"/b", prefix=True), op_get(b"/a")],
        failure=[op_put(b"/a"), op_get(b"", prefix=True)],
        compare=[kv.Compare(key=b"/a", target=kv.Compare.MOD, mod_revision=3)],
        request_id="t1",
    )


def test_txn_too_many_compares_is_rejected() -> None:
    """More than TXN_COMPARES_MAX compares is invalid; exactly the max is fine."""
    compares = [kv.Compare(key=b"/a")] * limits.TXN_COMPARES_MAX
    check_txn(compare=compares)
    with pytest.raises(InvalidArgument, match=r"txn\.compare: more than 128 compares"):
        check_txn(compare=[*compares, kv.Compare(key=b"/a")])


def test_txn_compare_key_is_checked() -> None:
    """A compare key must be a valid, non-empty key; the message gives its index."""
    with pytest.raises(InvalidArgument, match=r"txn\.compare\[1\]\.key: must not be empty"):
        check_txn(compare=[kv.Compare(key=b"/a"), kv.Compare(key=b"")])


def test_txn_compare_unknown_target_is_rejected() -> None:
    """A compare target outside the enum is invalid."""
    c = kv.Compare(key=b"/a")
    c.target = 7  # type: ignore[assignment]  # an open enum accepts unknown numbers
    with pytest.raises(InvalidArgument, match=r"txn\.compare\[0\]\.target: unknown target 7"):
        check_txn(compare=[c])


def test_txn_compare_unknown_result_is_rejected() -> None:
    """A compare result outside the enum is invalid."""
    c = kv.Compare(key=b"/a")
    c.result = 9  # type: ignore[assignment]  # an open enum accepts unknown numbers
    with pytest.raises(InvalidArgument, match=r"txn\.compare\[0\]\.result: unknown result 9"):
        check_txn(compare=[c])


@pytest.mark.parametrize("branch", ["success", "failure"])
def test_txn_too_many_ops_is_rejected(branch: str) -> None:
    """More than TXN_OPS_MAX ops in a branch is invalid; exactly the max is fine."""
    at_max = kv.TxnRequest()
    getattr(at_max, branch).extend([op_get(b"/a")] * limits.TXN_OPS_MAX)
    validate.check_txn(at_max, VALUE_MAX)
    over = kv.TxnRequest()
    getattr(over, branch).extend([op_get(b"/a")] * (limits.TXN_OPS_MAX + 1))
    with pytest.raises(InvalidArgument, match=rf"txn\.{branch}: more than 128 ops"):
        validate.check_txn(over, VALUE_MAX)


def test_txn_empty_op_is_rejected() -> None:
    """A RequestOp with nothing set is invalid."""
    with pytest.raises(InvalidArgument, match=r"txn\.success\[1\]: empty op"):
        check_txn(success=[op_get(b"/a"), kv.RequestOp()])


def test_txn_put_goes_through_put_checks() -> None:
    """Puts inside a txn get the key/value checks, with the op's position as field."""
    with pytest.raises(InvalidArgument, match=r"txn\.failure\[0\]\.key: must not contain NUL"):
        check_txn(failure=[op_put(b"/\x00")])
    with pytest.raises(ResourceExhausted, match=r"txn\.success\[0\]\.value: 17 bytes"):
        check_txn(success=[op_put(b"/a", b"v" * (VALUE_MAX + 1))])


def test_txn_put_with_expected_mod_revision_is_rejected() -> None:
    """expected_mod_revision is not allowed inside a txn, even 0 (use a compare)."""
    with pytest.raises(
        InvalidArgument, match=r"txn\.success\[0\]\.expected_mod_revision: not allowed in a txn"
    ):
        check_txn(success=[op_put(b"/a", expected_mod_revision=0)])
    with pytest.raises(InvalidArgument, match=r"txn\.failure\[0\]\.expected_mod_revision"):
        check_txn(failure=[op_put(b"/a", expected_mod_revision=5)])


def test_txn_op_request_ids_are_rejected() -> None:
    """Request ids belong on the txn, not on its put or delete ops."""
    with pytest.raises(InvalidArgument, match=r"txn\.success\[0\]\.request_id: set it on the txn"):
        check_txn(success=[op_put(b"/a", request_id="r1")])
    with pytest.raises(InvalidArgument, match=r"txn\.success\[0\]\.request_id: set it on the txn"):
        check_txn(success=[op_del(b"/a", request_id="r1")])


def test_txn_delete_goes_through_delete_checks() -> None:
    """Deletes inside a txn need a key unless prefix is set."""
    check_txn(success=[op_del(b"", prefix=True)])
    with pytest.raises(InvalidArgument, match=r"txn\.success\[0\]\.key: must not be empty"):
        check_txn(success=[op_del(b"")])


def test_txn_range_goes_through_range_checks() -> None:
    """Ranges inside a txn get the range checks."""
    bad = kv.RequestOp(request_range=kv.RangeRequest(key=b"/a", limit=-1))
    with pytest.raises(InvalidArgument, match=r"txn\.success\[0\]\.limit: must not be negative"):
        check_txn(success=[bad])


def test_txn_range_at_a_revision_is_rejected() -> None:
    """A txn read cannot ask for a past revision."""
    with pytest.raises(InvalidArgument, match="revision and serializable are not allowed"):
        check_txn(success=[op_get(b"/a", revision=1)])


def test_txn_serializable_range_is_rejected() -> None:
    """A txn read cannot be serializable."""
    op = kv.RequestOp(request_range=kv.RangeRequest(key=b"/a", serializable=True))
    with pytest.raises(InvalidArgument, match="revision and serializable are not allowed"):
        check_txn(failure=[op])


@pytest.mark.parametrize(
    "ops",
    [
        pytest.param([op_put(b"/a"), op_put(b"/a")], id="put-put"),
        pytest.param([op_put(b"/a"), op_del(b"/a")], id="put-del"),
        pytest.param([op_del(b"/a"), op_del(b"/a")], id="del-del"),
        pytest.param([op_put(b"/a/b"), op_del(b"/a", prefix=True)], id="put-then-prefix"),
        pytest.param([op_del(b"/a", prefix=True), op_put(b"/a/b")], id="prefix-then-put"),
        pytest.param([op_del(b"/a", prefix=True), op_put(b"/a")], id="prefix-covers-own-key"),
        pytest.param([op_del(b"/a/", prefix=True), op_del(b"/a", prefix=True)], id="nested"),
        pytest.param([op_del(b"", prefix=True), op_put(b"/z")], id="all-keys"),
        pytest.param([op_put(b"/x"), op_get(b"/x"), op_put(b"/x")], id="read-between"),
    ],
)
def test_txn_writing_a_key_twice_is_rejected(ops: list[kv.RequestOp]) -> None:
    """A branch may not write one key twice, including through a prefix delete."""
    with pytest.raises(InvalidArgument, match=r"txn\.success: duplicate key"):
        check_txn(success=ops)
    with pytest.raises(InvalidArgument, match=r"txn\.failure: duplicate key"):
        check_txn(failure=ops)


@pytest.mark.parametrize(
    "ops",
    [
        pytest.param([op_put(b"/a"), op_put(b"/ab")], id="plain-keys-share-prefix"),
        pytest.param([op_put(b"/a"), op_del(b"/a/", prefix=True)], id="prefix-below-key"),
        pytest.param([op_del(b"/a/b", prefix=True), op_put(b"/a")], id="key-above-prefix"),
        pytest.param([op_get(b"/a"), op_put(b"/a"), op_get(b"/a")], id="reads-are-not-writes"),
    ],
)
def test_txn_disjoint_writes_are_accepted(ops: list[kv.RequestOp]) -> None:
    """Writes to different keys (no prefix covering another) are fine."""
    check_txn(success=ops)


def test_txn_branches_may_write_the_same_key() -> None:
    """Only one branch runs, so success and failure may write the same key."""
    check_txn(success=[op_put(b"/a")], failure=[op_del(b"/a", prefix=True)])
