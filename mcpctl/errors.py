"""One error tree for mcp-config, mapped to gRPC status codes in one table.

::

    McpError
    ├── InvalidArgument        bad key, value, revision or request shape
    ├── NotFound               a key that must exist does not
    │   └── LeaseNotFound      no lease with that id ("lease not found")
    ├── FailedPrecondition
    │   ├── LeaseExists        a grant for an id in use ("lease already exists")
    │   ├── CompareFailed      compare-and-swap / expected revision mismatch
    │   └── Compacted          revision older than history (carries compact_revision)
    ├── Unavailable            no leader, quorum lost, node not ready (not applied)
    │   └── OutcomeUnknown     a write may or may not have been applied
    ├── DeadlineExceeded       the caller's deadline passed
    ├── Unauthenticated
    ├── PermissionDenied
    ├── ResourceExhausted      queue full, rate or size limit
    └── Internal               a bug: never expected

Domain code raises these; it knows nothing of gRPC. ``mcpctl.server.errors``
turns them into a status and trailing metadata, and the client SDK turns the
status back into the same class (``from_status``), so both sides share one
vocabulary. The ``mcp-error`` trailer names the class exactly where the
status code alone is ambiguous (e.g. UNAVAILABLE vs outcome unknown).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import ClassVar

ERROR_KIND_KEY = "mcp-error"
COMPACT_REVISION_KEY = "mcp-compact-revision"
RETRY_AFTER_KEY = "retry-after-ms"
# What a stopping member answers (UNAVAILABLE) to new calls and open streams.
STOPPING = "member stopping; retry another member"


class McpError(Exception):
    """Base class: ``code`` is the gRPC status code name."""

    code: ClassVar[str] = "UNKNOWN"
    kind: ClassVar[str] = "error"

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message

    def metadata(self) -> dict[str, str]:
        """Trailing metadata that lets the client rebuild this exact error."""
        return {ERROR_KIND_KEY: self.kind}


class InvalidArgument(McpError):
    """The request is malformed or out of range."""

    code = "INVALID_ARGUMENT"
    kind = "invalid_argument"


class NotFound(McpError):
    """A key that must exist does not."""

    code = "NOT_FOUND"
    kind = "not_found"


class LeaseNotFound(NotFound):
    """No lease with that id (a revoke, or a put attaching a key to it)."""

    kind = "lease_not_found"

    def __init__(self, message: str = "lease not found") -> None:
        super().__init__(message)


class FailedPrecondition(McpError):
    """The request is valid but the state does not allow it."""

    code = "FAILED_PRECONDITION"
    kind = "failed_precondition"


class LeaseExists(FailedPrecondition):
    """A grant named an id that a live lease already has."""

    kind = "lease_exists"

    def __init__(self, message: str = "lease already exists") -> None:
        super().__init__(message)


class CompareFailed(FailedPrecondition):
    """An expected mod_revision did not match."""

    kind = "compare_failed"


class Compacted(FailedPrecondition):
    """The revision asked for is older than the oldest one kept."""

    kind = "compacted"

    def __init__(self, revision: int, compact_revision: int) -> None:
        super().__init__(
            f"revision {revision} has been compacted; oldest available is {compact_revision}"
        )
        self.revision = revision
        self.compact_revision = compact_revision

    def metadata(self) -> dict[str, str]:
        return {**super().metadata(), COMPACT_REVISION_KEY: str(self.compact_revision)}


class Unavailable(McpError):
    """The cluster cannot serve the request now; a write was not applied."""

    code = "UNAVAILABLE"
    kind = "unavailable"


class OutcomeUnknown(Unavailable):
    """A write was proposed but its fate is unknown: it may have been applied.

    Retrying with the same request id is safe (it is applied at most once).
    """

    kind = "outcome_unknown"


class DeadlineExceeded(McpError):
    """The caller's deadline passed (a write may have been applied)."""

    code = "DEADLINE_EXCEEDED"
    kind = "deadline_exceeded"


class Unauthenticated(McpError):
    """No valid credentials."""

    code = "UNAUTHENTICATED"
    kind = "unauthenticated"


class PermissionDenied(McpError):
    """Valid credentials without the needed permission."""

    code = "PERMISSION_DENIED"
    kind = "permission_denied"


class ResourceExhausted(McpError):
    """A queue, rate or size limit was reached (``retry_after_ms``: when to retry)."""

    code = "RESOURCE_EXHAUSTED"
    kind = "resource_exhausted"

    def __init__(self, message: str, *, retry_after_ms: int | None = None) -> None:
        super().__init__(message)
        self.retry_after_ms = retry_after_ms

    def metadata(self) -> dict[str, str]:
        extra = {} if self.retry_after_ms is None else {RETRY_AFTER_KEY: str(self.retry_after_ms)}
        return {**super().metadata(), **extra}


class Internal(McpError):
    """An unexpected failure: a bug."""

    code = "INTERNAL"
    kind = "internal"


_KINDS: dict[str, type[McpError]] = {
    cls.kind: cls
    for cls in (
        InvalidArgument,
        NotFound,
        LeaseNotFound,
        FailedPrecondition,
        LeaseExists,
        CompareFailed,
        Unavailable,
        OutcomeUnknown,
        DeadlineExceeded,
        Unauthenticated,
        PermissionDenied,
        ResourceExhausted,
        Internal,
    )
}
_BY_CODE: dict[str, type[McpError]] = {
    "INVALID_ARGUMENT": InvalidArgument,
    "OUT_OF_RANGE": InvalidArgument,
    "NOT_FOUND": NotFound,
    "FAILED_PRECONDITION": FailedPrecondition,
    "ABORTED": FailedPrecondition,
    "UNAVAILABLE": Unavailable,
    "DEADLINE_EXCEEDED": DeadlineExceeded,
    "UNAUTHENTICATED": Unauthenticated,
    "PERMISSION_DENIED": PermissionDenied,
    "RESOURCE_EXHAUSTED": ResourceExhausted,
}


def from_status(code: str, message: str, metadata: Mapping[str, str]) -> McpError:
    """Rebuild the error a server raised from its status code and trailers."""
    kind = metadata.get(ERROR_KIND_KEY, "")
    if kind == Compacted.kind:
        compact = int(metadata.get(COMPACT_REVISION_KEY, "0") or 0)
        err: McpError = Compacted(0, compact)
        err.message = message
        err.args = (message,)
        return err
    cls = _KINDS.get(kind) or _BY_CODE.get(code, Internal if code == "INTERNAL" else McpError)
    if cls is ResourceExhausted and metadata.get(RETRY_AFTER_KEY, "").isdigit():
        return ResourceExhausted(message, retry_after_ms=int(metadata[RETRY_AFTER_KEY]))
    return cls(message)
