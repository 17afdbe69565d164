"""The one error tree (errors.py): every class survives the trip through a gRPC
status and its trailers, and codes the tree does not know map to a sensible class."""

from __future__ import annotations

import grpc
import pytest

from mcpctl import errors
from mcpctl.errors import (
    COMPACT_REVISION_KEY,
    ERROR_KIND_KEY,
    Compacted,
    McpError,
    from_status,
)


def all_subclasses(cls: type[McpError]) -> list[type[McpError]]:
    """The tree drawn in mcpctl/errors.py (not domain refinements elsewhere, such
    as the MCP layer's SchemaError, whose presence depends on import order)."""
    found: list[type[McpError]] = []
    for sub in cls.__subclasses__():
        if sub.__module__ != "mcpctl.errors":
            continue
        found.append(sub)
        found.extend(all_subclasses(sub))
    return found


SUBCLASSES = all_subclasses(McpError)
SIMPLE = [c for c in SUBCLASSES if c is not Compacted]


def test_the_tree_is_what_the_docstring_draws() -> None:
    """Every class drawn in the errors.py docstring exists (and no undocumented one)."""
    doc = errors.__doc__ or ""
    names = {c.__name__ for c in SUBCLASSES}
    assert names == {
        "InvalidArgument",
        "NotFound",
        "LeaseNotFound",
        "FailedPrecondition",
        "LeaseExists",
        "CompareFailed",
        "Compacted",
        "Unavailable",
        "OutcomeUnknown",
        "DeadlineExceeded",
        "Unauthenticated",
        "PermissionDenied",
        "ResourceExhausted",
        "Internal",
    }
    for name in names:
        assert name in doc


@pytest.mark.parametrize("cls", SUBCLASSES, ids=lambda c: c.__name__)
def test_every_class_has_a_real_grpc_code_and_a_unique_kind(cls: type[McpError]) -> None:
    """Each class's code is a gRPC status name, and its kind names it uniquely."""
    assert cls.code in grpc.StatusCode.__members__
    assert cls.code not in ("OK", "UNKNOWN")
    kinds = [c.kind for c in SUBCLASSES]
    assert kinds.count(cls.kind) == 1


@pytest.mark.parametrize("cls", SIMPLE, ids=lambda c: c.__name__)
def test_round_trip_through_status(cls: type[McpError]) -> None:
    """Server error -> (code, message, trailers) -> client error: same class, kind, code."""
    sent = cls("key '/a': something specific")
    got = from_status(sent.code, sent.message, sent.metadata())
    assert type(got) is cls
    assert got.kind == sent.kind and got.code == sent.code
    assert got.message == sent.message == str(got)


def test_compacted_round_trip_keeps_compact_revision() -> None:
    """Compacted comes back as Compacted with the oldest available revision."""
    sent = Compacted(3, 17)
    metadata = sent.metadata()
    assert metadata == {ERROR_KIND_KEY: "compacted", COMPACT_REVISION_KEY: "17"}
    got = from_status(sent.code, sent.message, metadata)
    assert type(got) is Compacted
    assert got.compact_revision == 17
    assert got.code == "FAILED_PRECONDITION"
    assert got.message == sent.message == str(got)
    assert isinstance(got, errors.FailedPrecondition)


def test_compacted_without_its_revision_trailer_still_is_compacted() -> None:
    """A Compacted status whose revision trailer was lost still maps to Compacted (0)."""
    got = from_status("FAILED_PRECONDITION", "gone", {ERROR_KIND_KEY: "compacted"})
    assert isinstance(got, Compacted) and got.compact_revision == 0


def test_kind_trailer_wins_over_the_code() -> None:
    """UNAVAILABLE alone is ambiguous; the kind trailer tells 'maybe applied' apart."""
    plain = from_status("UNAVAILABLE", "no leader", {})
    unknown = from_status("UNAVAILABLE", "lost leader", {ERROR_KIND_KEY: "outcome_unknown"})
    assert type(plain) is errors.Unavailable
    assert type(unknown) is errors.OutcomeUnknown
    cas = from_status("FAILED_PRECONDITION", "x", {ERROR_KIND_KEY: "compare_failed"})
    assert type(cas) is errors.CompareFailed


@pytest.mark.parametrize(
    ("code", "cls"),
    [
        ("INVALID_ARGUMENT", errors.InvalidArgument),
        ("OUT_OF_RANGE", errors.InvalidArgument),
        ("NOT_FOUND", errors.NotFound),
        ("FAILED_PRECONDITION", errors.FailedPrecondition),
        ("ABORTED", errors.FailedPrecondition),
        ("UNAVAILABLE", errors.Unavailable),
        ("DEADLINE_EXCEEDED", errors.DeadlineExceeded),
        ("UNAUTHENTICATED", errors.Unauthenticated),
        ("PERMISSION_DENIED", errors.PermissionDenied),
        ("RESOURCE_EXHAUSTED", errors.ResourceExhausted),
        ("INTERNAL", errors.Internal),
    ],
)
def test_status_without_trailer_maps_by_code(code: str, cls: type[McpError]) -> None:
    """A status from something that is not our server (a proxy, gRPC itself) maps by code."""
    got = from_status(code, "from the transport", {})
    assert type(got) is cls
    assert got.message == "from the transport"


@pytest.mark.parametrize("code", ["UNKNOWN", "CANCELLED", "UNIMPLEMENTED", "DATA_LOSS", "NOPE"])
def test_unknown_code_maps_to_the_base_class(code: str) -> None:
    """Codes outside the table become a plain McpError that keeps the message."""
    got = from_status(code, "server said no", {})
    assert type(got) is McpError
    assert got.message == "server said no"
    # The CLI maps it to a plain failure (exit 1), never to "unavailable".
    assert not isinstance(got, errors.Unavailable | errors.DeadlineExceeded)


def test_unknown_kind_falls_back_to_the_code() -> None:
    """A newer server's kind this client does not know still maps by status code."""
    got = from_status("PERMISSION_DENIED", "nope", {ERROR_KIND_KEY: "brand_new_kind"})
    assert type(got) is errors.PermissionDenied


def test_base_metadata_names_the_kind() -> None:
    """Every error's trailers carry its kind so the client can rebuild the class."""
    assert errors.InvalidArgument("x").metadata() == {ERROR_KIND_KEY: "invalid_argument"}
    assert errors.OutcomeUnknown("x").metadata() == {ERROR_KIND_KEY: "outcome_unknown"}
