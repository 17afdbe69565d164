"""Turn the security parts of a node config into live objects: the auth
``Guard`` (tokens hashed, roles resolved, the member token added), TLS server
credentials, and the credentials members use to call each other."""

from __future__ import annotations

import ipaddress
from collections.abc import Callable
from pathlib import Path

import grpc

from mcpctl.server import auth
from mcpctl.server.config import AuthSettings, ConfigError, NodeConfig, TlsSettings


def _read(path: Path, what: str) -> bytes:
    try:
        return path.read_bytes()
    except OSError as e:
        raise ConfigError(f"{what} ({path}): cannot read: {e.strerror}") from None


def build_guard(
    settings: AuthSettings, cluster_secret: str, voters: Callable[[], int] = lambda: 1
) -> auth.Guard:
    """``voters``: how many voting members split each identity's rate budget."""
    roles = dict(auth.BUILTIN_ROLES)
    for r in settings.roles:
        roles[r.name] = auth.Role(
            r.name,
            tuple(
                auth.Permission(
                    p.prefix.encode(),
                    auth.Access.WRITE if p.access == "write" else auth.Access.READ,
                )
                for p in r.permissions
            ),
        )
    tokens: dict[str, auth.Identity] = {}
    for t in settings.tokens:
        if t.sha256 is not None:
            digest = t.sha256
        else:
            assert t.token_file is not None
            raw = _read(t.token_file, f"auth.tokens[{t.name}].token_file").decode().strip()
            if len(raw) < 16:
                raise ConfigError(f"auth.tokens[{t.name}].token_file: token shorter than 16")
            digest = auth.hash_token(raw)
        tokens[digest] = auth.Identity(t.name, roles[t.role])
    tokens[auth.hash_token(auth.member_token(cluster_secret))] = auth.Identity(
        auth.MEMBER, auth.ADMIN
    )
    return auth.Guard(
        enabled=settings.enabled,
        tokens=tokens,
        rate_per_s=settings.rate_per_s,
        burst=settings.burst,
        voters=voters,
    )


def server_credentials(tls: TlsSettings) -> grpc.ServerCredentials:
    cert = _read(tls.cert_file, "server.tls.cert_file")
    key = _read(tls.key_file, "server.tls.key_file")
    client_ca = (
        _read(tls.client_ca_file, "server.tls.client_ca_file") if tls.client_ca_file else None
    )
    return grpc.ssl_server_credentials(
        [(key, cert)], root_certificates=client_ca, require_client_auth=client_ca is not None
    )


def member_channel_credentials(cfg: NodeConfig) -> grpc.ChannelCredentials | None:
    """How this member connects to the others' client ports (None: plaintext)."""
    tls = cfg.server.tls
    if tls is None:
        return None
    ca_path = tls.ca_file or tls.client_ca_file
    ca = _read(ca_path, "server.tls.ca_file") if ca_path else None
    if tls.client_ca_file is not None:  # mutual TLS: present our own certificate
        return grpc.ssl_channel_credentials(
            root_certificates=ca,
            private_key=_read(tls.key_file, "server.tls.key_file"),
            certificate_chain=_read(tls.cert_file, "server.tls.cert_file"),
        )
    return grpc.ssl_channel_credentials(root_certificates=ca)


def is_loopback(address: str) -> bool:
    """Does a listen address (``host:port``) stay on this machine?"""
    return is_loopback_host(address)


def is_loopback_host(host: str) -> bool:
    """Is ``host`` (``name``, ``name:port``, ``[v6]`` or ``[v6]:port``, as in a
    Host header or a listen address) ``localhost`` or a literal loopback
    address? Names that only start like one (``127.0.0.1.nip.io``) are not:
    whoever owns them can point them anywhere, or rebind them to 127.0.0.1."""
    if host.startswith("["):
        name, sep, rest = host[1:].partition("]")
        if not sep or (rest and not _port(rest)):
            return False
    else:
        name, colon, port = host.partition(":")
        if colon and not _port(colon + port):
            return False
    if name.lower() == "localhost":
        return True
    try:
        address = ipaddress.ip_address(name)
    except ValueError:
        return False
    return address.is_loopback


def _port(text: str) -> bool:
    """``:N`` with N a port number."""
    digits = text[1:]
    return text.startswith(":") and digits.isascii() and digits.isdigit() and len(digits) <= 5
