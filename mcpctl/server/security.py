"""Turn the security parts of a node config into live objects: the auth
``Guard`` (tokens hashed, roles resolved, the member token added), TLS server
credentials, and the credentials members use to call each other."""

from __future__ import annotations

from pathlib import Path

import grpc

from mcpctl.server import auth
from mcpctl.server.config import AuthSettings, ConfigError, NodeConfig, TlsSettings


def _read(path: Path, what: str) -> bytes:
    try:
        return path.read_bytes()
    except OSError as e:
        raise ConfigError(f"{what} ({path}): cannot read: {e.strerror}") from None


def build_guard(settings: AuthSettings, cluster_secret: str) -> auth.Guard:
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
    host = address.rpartition(":")[0].strip("[]")
    return host in ("localhost", "::1") or host.startswith("127.")
