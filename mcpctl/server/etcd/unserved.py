"""The etcd methods mcp-config does not serve: each answers UNIMPLEMENTED with a
sentence saying what to use instead (never gRPC's bare "method not found").

``fill`` gives a servicer a handler for every method of its service it does
not define; they go through ``rpc``/``rpc_stream`` like every call (auth guard,
metrics), and need no permission (they change nothing).
"""

from __future__ import annotations

import types
from collections.abc import AsyncIterator
from typing import Any

from google.protobuf.descriptor import ServiceDescriptor

from mcpctl.server.errors import rpc, rpc_stream
from mcpctl.server.etcd.errors import unimplemented

_MEMBERS = "use `mcpctl members add/remove` (docs/operations.md); there are no learners"
_ACCESS = "users and roles are mcp-config tokens and roles in the node config (docs/security.md)"
INSTEAD: dict[str, str] = {
    "MemberAdd": _MEMBERS,
    "MemberRemove": _MEMBERS,
    "MemberUpdate": "a member's addresses are set in the node config; remove and add it",
    "MemberPromote": _MEMBERS,
    "Defragment": "there is no database file to defragment",
    "Hash": "compare `mcpctl status` revisions; there is no bbolt database to hash",
    "HashKV": "compare `mcpctl status` revisions; there is no bbolt database to hash",
    "Snapshot": "use `mcpctl backup` (docs/operations.md); an etcd snapshot file cannot be made",
    "MoveLeader": "leadership moves on its own; a stopping member hands it over",
    "Downgrade": "mcp-config has no cluster version to downgrade",
    "AuthEnable": "auth is enabled in the node config (auth.enabled, docs/security.md)",
    "AuthDisable": "auth is disabled in the node config (auth.enabled, docs/security.md)",
    "AuthStatus": "auth is set in the node config (auth.enabled, docs/security.md)",
    "UserAdd": _ACCESS,
    "UserGet": _ACCESS,
    "UserList": _ACCESS,
    "UserDelete": _ACCESS,
    "UserChangePassword": _ACCESS,
    "UserGrantRole": _ACCESS,
    "UserRevokeRole": _ACCESS,
    "RoleAdd": _ACCESS,
    "RoleGet": _ACCESS,
    "RoleList": _ACCESS,
    "RoleDelete": _ACCESS,
    "RoleGrantPermission": _ACCESS,
    "RoleRevokePermission": _ACCESS,
}


def _refusal(name: str) -> Any:
    return unimplemented(f"etcd's {name} is not served; {INSTEAD.get(name, 'no equivalent')}")


def fill(servicer: Any, service: ServiceDescriptor) -> None:
    """Give ``servicer`` an UNIMPLEMENTED handler for each method it lacks."""
    for method in service.methods:
        if hasattr(servicer, method.name):
            continue
        name = method.name
        if method.server_streaming:

            async def streamed(self: Any, request: Any, _name: str = name) -> AsyncIterator[Any]:
                raise _refusal(_name)
                yield  # an async generator, as rpc_stream wants

            streamed.__name__ = name
            handler: Any = rpc_stream(streamed)
        else:

            async def unary(self: Any, request: Any, timeout_s: float, _name: str = name) -> Any:
                raise _refusal(_name)

            unary.__name__ = name
            handler = rpc(unary)
        setattr(servicer, name, types.MethodType(handler, servicer))
