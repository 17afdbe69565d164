"""Authentication, authorization and per-identity rate limits (pure, no gRPC).

- **Tokens**: bearer tokens, stored only as SHA-256 hashes (in the node config
  or read from token files and hashed at load). A token maps to an identity
  (a name) and a role.
- **Roles**: built-in ``admin`` (everything, including membership, compaction
  and backups) and ``readonly`` (read every key); custom roles list key-prefix
  permissions with ``read`` or ``write`` (write implies read).
- **Members**: nodes call each other (status, forwarded membership changes)
  with a token derived from the cluster secret; it has the ``admin`` role.
- **Rate limits**: ``rate``/s and ``burst`` per identity *for the whole
  cluster*: each member keeps one token bucket per identity holding its share
  (``rate / voters``, ``burst / voters``), so a client that spreads its calls
  over every member gets no more than one that talks to one member gets from
  all of them together. No Raft traffic per request. An empty bucket answers
  RESOURCE_EXHAUSTED with the time until the next token.

``Guard.check(metadata, method, request)`` is the one entry point: it returns
the caller's ``Identity`` or raises ``Unauthenticated`` / ``PermissionDenied``
/ ``ResourceExhausted``. It is ``authenticate`` then ``admit``; a caller that
logs calls the two itself, to bind the identity before a refusal is logged.
With auth disabled every caller is ``anonymous`` with the ``admin`` role
(local development only; the node warns loudly when it listens beyond
loopback that way).
"""

from __future__ import annotations

import contextvars
import hashlib
import hmac
import threading
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from enum import IntEnum
from typing import Any

from mcpctl import limits
from mcpctl._proto.mcp.v1 import kv_pb2 as kv
from mcpctl.errors import PermissionDenied, ResourceExhausted, Unauthenticated

AUTHORIZATION = "authorization"
BEARER = "bearer "


class Access(IntEnum):
    READ = 1
    WRITE = 2
    ADMIN = 3


@dataclass(frozen=True, slots=True)
class Permission:
    prefix: bytes
    access: Access


@dataclass(frozen=True, slots=True)
class Role:
    name: str
    permissions: tuple[Permission, ...]

    def allows(self, key: bytes, prefix: bool, access: Access) -> bool:
        """May this role do ``access`` on ``key`` (every key under it if ``prefix``)?"""
        for p in self.permissions:
            if p.access < access:
                continue
            if p.access == Access.ADMIN and p.prefix == b"":
                return True
            if key.startswith(p.prefix):
                return True
        return False

    @property
    def admin(self) -> bool:
        return any(p.access == Access.ADMIN for p in self.permissions)


ADMIN = Role("admin", (Permission(b"", Access.ADMIN),))
READONLY = Role("readonly", (Permission(b"", Access.READ),))
BUILTIN_ROLES = {ADMIN.name: ADMIN, READONLY.name: READONLY}


@dataclass(frozen=True, slots=True)
class Identity:
    name: str
    role: Role


ANONYMOUS = Identity("anonymous", ADMIN)
MEMBER = "member"

# Who is making the request being handled (set by the RPC layer; read by the
# audit log), and over which connection (set for streams; the watch limits).
current_identity: contextvars.ContextVar[Identity] = contextvars.ContextVar(
    "mcp_identity", default=ANONYMOUS
)
current_peer: contextvars.ContextVar[str] = contextvars.ContextVar("mcp_peer", default="")


def hash_token(token: str) -> str:
    return hashlib.sha256(token.encode("utf-8")).hexdigest()


def member_token(cluster_secret: str) -> str:
    """The token members use with each other (derived; the secret never travels)."""
    return hmac.new(cluster_secret.encode(), b"mcp-config member", "sha256").hexdigest()


class TokenBucket:
    """``rate`` tokens per second, at most ``burst`` saved. Thread-safe."""

    def __init__(self, rate: float, burst: float, now: float | None = None) -> None:
        assert rate > 0 and burst >= 1
        self.rate = rate
        self.burst = burst
        self._tokens = burst
        self._at = time.monotonic() if now is None else now
        self._lock = threading.Lock()

    def take(self, now: float | None = None) -> float:
        """0 when a token was taken, else seconds until one is available."""
        with self._lock:
            now = time.monotonic() if now is None else now
            elapsed = max(0.0, now - self._at)
            self._tokens = min(self.burst, self._tokens + elapsed * self.rate)
            self._at = now
            if self._tokens >= 1:
                self._tokens -= 1
                return 0.0
            return (1 - self._tokens) / self.rate

    def resize(self, rate: float, burst: float, now: float | None = None) -> None:
        """A new rate and burst from now on; saved tokens beyond ``burst`` are dropped."""
        assert rate > 0 and burst >= 1
        with self._lock:
            now = time.monotonic() if now is None else now
            elapsed = max(0.0, now - self._at)
            self._tokens = min(self.burst, self._tokens + elapsed * self.rate)
            self._at = now
            self.rate, self.burst = rate, burst
            self._tokens = min(self._tokens, burst)


# What each RPC needs: (access, how to find the keys it touches).
# "admin" RPCs touch no key; Status-like RPCs need any valid identity.
_NONE = "none"
# Needs write permission on some prefix (any key), not on a particular key.
_WRITER = "writer"
_METHODS: dict[str, Access | str] = {
    "Range": Access.READ,
    "History": Access.READ,
    "Watch": Access.READ,
    "Put": Access.WRITE,
    "DeleteRange": Access.WRITE,
    "Txn": Access.WRITE,  # refined per op in _txn_keys
    "Compact": Access.ADMIN,
    "Status": _NONE,
    "ClusterStatus": _NONE,
    "MemberList": _NONE,
    "MemberAdd": Access.ADMIN,
    "MemberRemove": Access.ADMIN,
    "Snapshot": Access.ADMIN,
    # Leases (docs/leases.md): any identity that may write somewhere may hold
    # leases; the keys it attaches are checked on its puts, a revoke needs
    # write on every attached key and TimeToLive's key list read on each
    # (both checked by the node, which knows the keys). Leases: like Status.
    "Grant": _WRITER,
    "Revoke": _WRITER,
    "KeepAlive": _WRITER,
    "TimeToLive": _WRITER,
    "Leases": _NONE,
}


def _keys(method: str, request: Any) -> Iterable[tuple[bytes, bool, Access]]:
    """(key, prefix, access) for every key a request reads or writes."""
    if method in ("Range", "History", "Watch"):
        yield request.key, request.prefix, Access.READ
    elif method in ("Put", "DeleteRange"):
        yield request.key, getattr(request, "prefix", False), Access.WRITE
    elif method == "Txn":
        for c in request.compare:
            yield c.key, c.prefix, Access.READ
        for op in [*request.success, *request.failure]:
            which = op.WhichOneof("request")
            if which == "request_range":
                yield op.request_range.key, op.request_range.prefix, Access.READ
            elif which == "request_put":
                yield op.request_put.key, False, Access.WRITE
            elif which == "request_delete_range":
                r = op.request_delete_range
                yield r.key, r.prefix, Access.WRITE


@dataclass
class Guard:
    """Authenticates, authorizes and rate-limits one request (see the module doc)."""

    enabled: bool = False
    # token SHA-256 (hex) -> identity
    tokens: dict[str, Identity] = field(default_factory=dict)
    # Cluster-wide, per identity; each member enforces its share (see share()).
    rate_per_s: float = limits.TOKEN_RATE_PER_S_DEFAULT
    burst: float = limits.TOKEN_BURST_DEFAULT
    # How many voting members split the budget (the node passes Raft's count).
    voters: Callable[[], int] = lambda: 1
    _buckets: dict[str, TokenBucket] = field(default_factory=dict)

    def share(self) -> tuple[float, float]:
        """This member's (rate/s, burst) of each identity's budget."""
        voters = max(1, self.voters())
        return self.rate_per_s / voters, max(1.0, self.burst / voters)

    def authenticate(self, metadata: Sequence[tuple[str, Any]]) -> Identity:
        if not self.enabled:
            return ANONYMOUS
        header = next(
            (str(v) for k, v in metadata if k.lower() == AUTHORIZATION and isinstance(v, str)),
            None,
        )
        if header is None:
            raise Unauthenticated("missing bearer token (--token / MCPCTL_TOKEN)")
        if not header.lower().startswith(BEARER):
            raise Unauthenticated("the authorization header must be 'Bearer <token>'")
        identity = self.tokens.get(hash_token(header[len(BEARER) :].strip()))
        if identity is None:
            raise Unauthenticated("unknown token")
        return identity

    def authorize(self, identity: Identity, method: str, request: Any) -> None:
        need = _METHODS.get(method)
        if need is None:
            raise PermissionDenied(f"{method}: not allowed")
        if need == _NONE or identity.role is ADMIN:  # admin may do every known method
            return
        if need == _WRITER:
            if not any(p.access >= Access.WRITE for p in identity.role.permissions):
                raise PermissionDenied(
                    f"{method} needs write permission ({identity.name} has none)"
                )
            return
        if need == Access.ADMIN:
            if not identity.role.admin:
                raise PermissionDenied(f"{method} needs the admin role ({identity.name} has none)")
            return
        for key, prefix, access in _keys(method, request):
            if not identity.role.allows(key, prefix, access):
                what = "under " if prefix else ""
                verb = "write" if access == Access.WRITE else "read"
                shown = key.decode("utf-8", "replace")
                raise PermissionDenied(f"{identity.name} may not {verb} {what}{shown!r}")

    def limit(self, identity: Identity) -> None:
        if not self.enabled:
            return
        rate, burst = self.share()
        bucket = self._buckets.get(identity.name)
        if bucket is None:
            bucket = self._buckets[identity.name] = TokenBucket(rate, burst)
        elif (bucket.rate, bucket.burst) != (rate, burst):  # the membership changed
            bucket.resize(rate, burst)
        wait_s = bucket.take()
        if wait_s > 0:
            raise ResourceExhausted(
                f"rate limit for {identity.name} ({self.rate_per_s:g}/s across the "
                f"cluster, {rate:g}/s on this member); retry in {wait_s * 1000:.0f} ms",
                retry_after_ms=max(1, round(wait_s * 1000)),
            )

    def admit(self, identity: Identity, method: str, request: Any) -> None:
        """Authorize and rate-limit an authenticated caller."""
        self.authorize(identity, method, request)
        self.limit(identity)

    def check(self, metadata: Sequence[tuple[str, Any]], method: str, request: Any) -> Identity:
        identity = self.authenticate(metadata)
        self.admit(identity, method, request)
        return identity


# -- Config calls, authorized as the KV calls they amount to ---------------------------

_ROOT = b"/mcp/"


class KvEquivalentGuard:
    """Authorizes a Config call as the KV call it amounts to, through ``Guard.check``.

    Apply writes (a dry run reads) every key under /mcp/, Export reads them,
    Rollback writes (a dry run reads) its key or prefix: the caller needs
    exactly the permissions of that KV call, and is rate-limited once.
    """

    def __init__(self, guard: Guard) -> None:
        self._guard = guard

    def authenticate(self, metadata: Sequence[tuple[str, Any]]) -> Identity:
        return self._guard.authenticate(metadata)

    def admit(self, identity: Identity, method: str, request: Any) -> None:
        kv_method, kv_request = kv_equivalent(method, request)
        self._guard.admit(identity, kv_method, kv_request)

    def check(self, metadata: Sequence[tuple[str, Any]], method: str, request: Any) -> Identity:
        identity = self.authenticate(metadata)
        self.admit(identity, method, request)
        return identity


def kv_equivalent(method: str, request: Any) -> tuple[str, Any]:
    """The KV method and request whose permissions a Config call needs."""
    if method == "Apply":
        key, prefix, write = _ROOT, True, not request.dry_run
    elif method == "Rollback":
        key, prefix, write = request.key, request.prefix, not request.dry_run
    elif method == "Export":
        key, prefix, write = _ROOT, True, False
    else:
        raise AssertionError(f"unknown Config method {method}")
    if write:
        return "DeleteRange", kv.DeleteRangeRequest(key=key, prefix=prefix)
    return "Range", kv.RangeRequest(key=key, prefix=prefix)
