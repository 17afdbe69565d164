"""Node configuration: defaults < YAML file < ``MCP_*`` environment < flags.

Every key is validated (pydantic, ``extra="forbid"``): an unknown key, a
wrong type, an out-of-range value, a missing or unreadable file or bad YAML
gives one ``ConfigError`` line that names the key (or file and line), and
``mcpctl serve`` exits with code 2. Environment variables are ``MCP_`` plus
the upper-cased key path with ``__`` between levels
(``MCP_SERVER__LISTEN=0.0.0.0:7101``); their values are parsed as YAML, so
numbers, booleans and lists work. Secrets may come from files (``*_file``).

``MCP_`` is also the prefix of every Model Context Protocol tool's variables
(``MCP_API_KEY``, ``MCP_SERVER_URL``), so a variable is read as config only
when it is shaped like one of ours: its first segment is a top-level key
(``MCP_NAME``, ``MCP_RAFT__...``), or it is a path (has ``__``). Those are
checked like the file (``MCP_RAFT__HEARTBEAT`` and ``MCP_RAFTT__TICK_MS`` are
refused); any other ``MCP_*`` variable is not ours and is ignored
(``foreign_env`` names them, for a debug line).

The effective configuration is logged once at start, with secrets redacted.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import Annotated, Any, Literal

import yaml
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    SecretStr,
    ValidationError,
    field_validator,
    model_validator,
)

from mcpctl import limits
from mcpctl.raft.journal import Durability

ENV_PREFIX = "MCP_"


class ConfigError(Exception):
    """The configuration cannot be used; the message is one line naming the culprit."""


def _check_hostport(value: str) -> str:
    host, sep, port = value.rpartition(":")
    if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
        shown = value if len(value) <= 80 else value[:77] + "..."
        raise ValueError(f"{shown!r} is not host:port")
    return value


HostPort = Annotated[str, Field(min_length=3)]


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, strict=False)


class Member(_Model):
    """One voting member: its name and the addresses peers and clients use."""

    name: Annotated[str, Field(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9._-]+$")]
    raft: HostPort
    client: HostPort

    @field_validator("raft", "client")
    @classmethod
    def _hostport(cls, v: str) -> str:
        return _check_hostport(v)


class TlsSettings(_Model):
    """TLS for client gRPC (and for member-to-member calls)."""

    cert_file: Path
    key_file: Path
    # Require and verify client certificates signed by this CA (mutual TLS).
    client_ca_file: Path | None = None
    # CA that signed the members' certificates, to verify each other
    # (default: client_ca_file).
    ca_file: Path | None = None


class ServerSettings(_Model):
    # Where the client gRPC server binds; default: this member's `client` address.
    listen: HostPort | None = None
    tls: TlsSettings | None = None

    @field_validator("listen")
    @classmethod
    def _hostport(cls, v: str | None) -> str | None:
        return None if v is None else _check_hostport(v)


class RaftSettings(_Model):
    # Where the Raft server binds; default: this member's `raft` address.
    listen: HostPort | None = None
    heartbeat_ms: Annotated[int, Field(ge=10, le=1000)] = 50
    election_timeout_min_ms: Annotated[int, Field(ge=100, le=60_000)] = 500
    election_timeout_max_ms: Annotated[int, Field(ge=100, le=60_000)] = 1000
    # A leader that has not heard from a majority for this long steps down.
    leader_fallback_ms: Annotated[int, Field(ge=200, le=60_000)] = 2000
    # Below the election timeout: a restarted member must hear the leader (who
    # reconnects to it) before its own first election timer runs out.
    connection_retry_ms: Annotated[int, Field(ge=50, le=60_000)] = 200
    tick_ms: Annotated[int, Field(ge=1, le=100)] = 10
    # Snapshot + truncate the Raft log after this many entries / seconds.
    compaction_min_entries: Annotated[int, Field(ge=100, le=10_000_000)] = 20_000
    compaction_min_time_s: Annotated[int, Field(ge=1, le=86_400)] = 300
    # fsync: log entries are fdatasynced (one sync per appended batch) before a
    # member acknowledges them, term and vote before the message that depends
    # on them; none: nothing is synced (a power cut can lose acknowledged writes).
    durability: Durability = Durability.FSYNC

    @field_validator("listen")
    @classmethod
    def _hostport(cls, v: str | None) -> str | None:
        return None if v is None else _check_hostport(v)

    @model_validator(mode="after")
    def _timeouts(self) -> RaftSettings:
        if self.election_timeout_min_ms < 3 * self.heartbeat_ms:
            raise ValueError("election_timeout_min_ms must be at least 3 x heartbeat_ms")
        if self.election_timeout_max_ms <= self.election_timeout_min_ms:
            raise ValueError("election_timeout_max_ms must be above election_timeout_min_ms")
        if self.leader_fallback_ms <= self.heartbeat_ms * 2:
            raise ValueError("leader_fallback_ms must be above 2 x heartbeat_ms")
        return self


class ClusterSettings(_Model):
    name: Annotated[str, Field(min_length=1, max_length=64)] = "mcp"
    members: Annotated[list[Member], Field(min_length=1, max_length=15)]
    # Makes the cluster id (and member ids) this cluster's own, like etcd's
    # --initial-cluster-token: the same on every member, different per cluster.
    # Unset: derived one-way from the secret (docs/configuration.md).
    token: Annotated[str, Field(min_length=1, max_length=128)] | None = None
    # Encrypts and authenticates peer (Raft) traffic. Required.
    secret: SecretStr | None = None
    secret_file: Path | None = None

    @model_validator(mode="after")
    def _unique(self) -> ClusterSettings:
        for attr in ("name", "raft", "client"):
            seen: set[str] = set()
            for m in self.members:
                value = getattr(m, attr)
                if value in seen:
                    raise ValueError(f"members: duplicate {attr} {value!r}")
                seen.add(value)
        if self.secret is not None and self.secret_file is not None:
            raise ValueError("set secret or secret_file, not both")
        return self


class LimitSettings(_Model):
    value_bytes_max: Annotated[int, Field(ge=1, le=64 * limits.MIB)] = (
        limits.VALUE_BYTES_MAX_DEFAULT
    )
    history_revisions_max: Annotated[int, Field(ge=1, le=10_000_000)] = (
        limits.HISTORY_REVISIONS_MAX_DEFAULT
    )
    history_bytes_max: Annotated[int, Field(ge=limits.MIB, le=64 * 1024 * limits.MIB)] = (
        limits.HISTORY_BYTES_MAX_DEFAULT
    )
    proposal_timeout_ms: Annotated[int, Field(ge=100, le=600_000)] = int(
        limits.PROPOSAL_TIMEOUT_S_DEFAULT * 1000
    )
    leader_wait_ms: Annotated[int, Field(ge=0, le=600_000)] = int(
        limits.LEADER_WAIT_S_DEFAULT * 1000
    )
    stop_grace_ms: Annotated[int, Field(ge=0, le=600_000)] = int(limits.STOP_GRACE_S_DEFAULT * 1000)

    @model_validator(mode="after")
    def _relations(self) -> LimitSettings:
        if self.history_bytes_max < 2 * self.value_bytes_max:
            raise ValueError("history_bytes_max must be at least 2 x value_bytes_max")
        return self


class TokenSettings(_Model):
    """A bearer token: its SHA-256 (hex), or a file holding the token itself."""

    name: Annotated[str, Field(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9._@-]+$")]
    role: Annotated[str, Field(min_length=1, max_length=64)]
    sha256: Annotated[str, Field(pattern=r"^[0-9a-f]{64}$")] | None = None
    token_file: Path | None = None

    @model_validator(mode="after")
    def _one_source(self) -> TokenSettings:
        if (self.sha256 is None) == (self.token_file is None):
            raise ValueError("set exactly one of sha256 or token_file")
        return self


class PermissionSettings(_Model):
    prefix: Annotated[str, Field(max_length=1024)]
    access: Literal["read", "write"]


class RoleSettings(_Model):
    name: Annotated[str, Field(min_length=1, max_length=64)]
    permissions: list[PermissionSettings]


class AuthSettings(_Model):
    # Off: every client may do everything. Only for local development; a node
    # that listens beyond loopback with auth off warns loudly at start.
    enabled: bool = False
    tokens: list[TokenSettings] = []
    roles: list[RoleSettings] = []
    rate_per_s: Annotated[float, Field(gt=0, le=1_000_000)] = limits.TOKEN_RATE_PER_S_DEFAULT
    burst: Annotated[int, Field(ge=1, le=1_000_000)] = limits.TOKEN_BURST_DEFAULT

    @model_validator(mode="after")
    def _consistent(self) -> AuthSettings:
        builtin = {"admin", "readonly"}
        names = [r.name for r in self.roles]
        for name in names:
            if name in builtin:
                raise ValueError(f"roles: {name!r} is built in")
            if names.count(name) > 1:
                raise ValueError(f"roles: duplicate role {name!r}")
        known = builtin | set(names)
        for t in self.tokens:
            if t.role not in known:
                raise ValueError(f"tokens: {t.name}: unknown role {t.role!r}")
        token_names = [t.name for t in self.tokens]
        if len(set(token_names)) != len(token_names):
            raise ValueError("tokens: duplicate token name")
        if self.enabled and not self.tokens:
            raise ValueError("enabled without tokens: nobody could connect")
        return self


class MetricsSettings(_Model):
    # Where Prometheus scrapes /metrics (host:port); unset = no metrics server.
    listen: HostPort | None = None

    @field_validator("listen")
    @classmethod
    def _hostport(cls, v: str | None) -> str | None:
        return None if v is None else _check_hostport(v)


class ConsoleSettings(_Model):
    # Where the web console (docs/console.md) listens (host:port); unset = off.
    listen: HostPort | None = None

    @field_validator("listen")
    @classmethod
    def _hostport(cls, v: str | None) -> str | None:
        return None if v is None else _check_hostport(v)


class EtcdGatewaySettings(_Model):
    # Where etcd's JSON gateway (docs/etcd-compat.md) listens (host:port); unset = off.
    listen: HostPort | None = None

    @field_validator("listen")
    @classmethod
    def _hostport(cls, v: str | None) -> str | None:
        return None if v is None else _check_hostport(v)


class LogSettings(_Model):
    level: Literal["debug", "info", "warning", "error"] = "info"
    format: Literal["json", "console"] = "json"


class NodeConfig(_Model):
    """A whole node configuration (see docs/configuration.md)."""

    name: Annotated[str, Field(min_length=1, max_length=64)]
    data_dir: Path
    cluster: ClusterSettings
    server: ServerSettings = ServerSettings()
    raft: RaftSettings = RaftSettings()
    limits: LimitSettings = LimitSettings()
    metrics: MetricsSettings = MetricsSettings()
    console: ConsoleSettings = ConsoleSettings()
    etcd_gateway: EtcdGatewaySettings = EtcdGatewaySettings()
    auth: AuthSettings = AuthSettings()
    log: LogSettings = LogSettings()

    @model_validator(mode="after")
    def _self_member(self) -> NodeConfig:
        if not any(m.name == self.name for m in self.cluster.members):
            raise ValueError(f"name: {self.name!r} is not one of cluster.members")
        return self

    @property
    def member(self) -> Member:
        return next(m for m in self.cluster.members if m.name == self.name)

    @property
    def peers(self) -> list[Member]:
        return [m for m in self.cluster.members if m.name != self.name]

    @property
    def client_listen(self) -> str:
        return self.server.listen or self.member.client

    @property
    def raft_listen(self) -> str:
        return self.raft.listen or self.member.raft

    def cluster_secret(self) -> str:
        """The peer secret, read from secret_file when given. Raises ConfigError."""
        if self.cluster.secret is not None:
            value = self.cluster.secret.get_secret_value()
            where = "cluster.secret"
        elif self.cluster.secret_file is not None:
            where = f"cluster.secret_file ({self.cluster.secret_file})"
            try:
                value = self.cluster.secret_file.read_text().strip()
            except OSError as e:
                raise ConfigError(f"{where}: cannot read: {e.strerror}") from None
            except ValueError as e:  # a NUL in the path, or not UTF-8
                raise ConfigError(f"{where}: cannot read: {_first_line(e)}") from None
        else:
            raise ConfigError(
                "cluster.secret or cluster.secret_file is required "
                "(it encrypts and authenticates Raft traffic)"
            )
        if len(value) < 16:
            raise ConfigError(f"{where}: must be at least 16 characters")
        return value

    def redacted(self) -> dict[str, Any]:
        """The effective config for the start-up log line: secrets hidden."""
        data = self.model_dump(mode="json")
        if data["cluster"].get("secret"):
            data["cluster"]["secret"] = "***"
        return data


def load(
    path: Path | None,
    *,
    env: Mapping[str, str] | None = None,
    overrides: Mapping[str, Any] | None = None,
) -> NodeConfig:
    """Build the config from a YAML file, the environment and flag overrides.

    ``overrides`` maps dotted key paths (``server.listen``) to values.
    Raises ConfigError with one line naming the problem.
    """
    data: dict[str, Any] = _read_yaml(path) if path is not None else {}
    sources: dict[str, str] = {}  # dotted key -> where its value came from, if not the file
    for name, (dotted, value) in _env_overrides(os.environ if env is None else env).items():
        _set_path(data, dotted.split("."), value)
        sources[dotted] = name
    for dotted, value in (overrides or {}).items():
        _set_path(data, dotted.split("."), value)
        sources[dotted] = f"override {dotted}"
    try:
        return NodeConfig.model_validate(data)
    except ValidationError as e:
        raise ConfigError(_describe(e, path, sources)) from None


def _read_yaml(path: Path) -> dict[str, Any]:
    try:
        text = path.read_text()
    except FileNotFoundError:
        raise ConfigError(f"{path}: no such file") from None
    except OSError as e:
        raise ConfigError(f"{path}: cannot read: {e.strerror}") from None
    except UnicodeDecodeError as e:
        raise ConfigError(f"{path}: not UTF-8 text (byte {e.start})") from None
    try:
        loaded = yaml.safe_load(text)
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        where = f"{path}:{mark.line + 1}" if mark is not None else str(path)
        problem = getattr(e, "problem", None) or "invalid YAML"
        raise ConfigError(f"{where}: bad YAML: {problem}") from None
    except (RecursionError, ValueError) as e:  # nesting too deep, a 5000-digit int, 2001-13-45
        raise ConfigError(f"{path}: bad YAML: {_yaml_limit(e)}") from None
    if loaded is None:
        return {}
    if not isinstance(loaded, dict):
        raise ConfigError(f"{path}: the top level must be a mapping of keys")
    return loaded


def _key_name(part: object) -> str:
    """A key as it can be shown on one line (odd keys quoted, long ones cut)."""
    text = str(part)
    if not text.isprintable() or not text or text != text.strip():
        text = repr(text)
    return text if len(text) <= 80 else text[:77] + "..."


def _first_line(e: BaseException) -> str:
    return (str(e).splitlines() or [type(e).__name__])[0][:200]


def _yaml_limit(e: BaseException) -> str:
    if isinstance(e, RecursionError):
        return "nested too deeply"
    return _first_line(e)


def _is_config_env(name: str) -> bool:
    """``name`` is meant as a config key: ``MCP_`` + a top-level key, or ``MCP_`` + a path."""
    if not name.startswith(ENV_PREFIX) or name == ENV_PREFIX:
        return False
    path = name[len(ENV_PREFIX) :]
    return "__" in path or path.lower() in NodeConfig.model_fields


def foreign_env(env: Mapping[str, str]) -> list[str]:
    """The ``MCP_*`` variable names that are not config keys (left alone), sorted."""
    return sorted(n for n in env if n.startswith(ENV_PREFIX) and not _is_config_env(n))


def _env_overrides(env: Mapping[str, str]) -> dict[str, tuple[str, Any]]:
    """``{VARIABLE: (dotted.key, value)}``; lists and mappings are YAML, scalars stay text."""
    out: dict[str, tuple[str, Any]] = {}
    for name, raw in env.items():
        if not _is_config_env(name):
            continue
        dotted = ".".join(part.lower() for part in name[len(ENV_PREFIX) :].split("__"))
        try:
            parsed = yaml.safe_load(raw) if raw else raw
        except (yaml.YAMLError, RecursionError, ValueError):
            raise ConfigError(f"{name}: value is not valid YAML") from None
        # Scalars stay verbatim (pydantic converts "20" to 20): YAML would cut a
        # secret at " #" or turn an all-digit one into an int.
        out[name] = (dotted, parsed if isinstance(parsed, list | dict) else raw)
    return out


def _set_path(data: dict[str, Any], path: list[str], value: Any) -> None:
    node = data
    for i, part in enumerate(path[:-1]):
        child = node.get(part)
        if child is None:
            child = node[part] = {}
        if not isinstance(child, dict):
            raise ConfigError(f"{'.'.join(path[: i + 1])}: is not a section")
        node = child
    node[path[-1]] = value


def _describe(error: ValidationError, path: Path | None, sources: Mapping[str, str]) -> str:
    first = error.errors()[0]
    dotted = ".".join(str(part) for part in first["loc"])
    # The source set that key, one of its parents, or (an unknown section) a key inside it.
    origin = next(
        (
            src
            for key, src in sources.items()
            if dotted == key or dotted.startswith(key + ".") or key.startswith(dotted + ".")
        ),
        None,
    )
    loc = ""
    for part in first["loc"]:
        name = _key_name(part)
        loc += f"[{part}]" if isinstance(part, int) else (f".{name}" if loc else name)
    msg = first["msg"]
    if first["type"] == "extra_forbidden":
        msg = "unknown key"
    elif first["type"] == "missing":
        msg = "required key is missing"
    msg = " ".join(msg.removeprefix("Value error, ").split())
    source = f"{origin}: " if origin else (f"{path}: " if path is not None else "")
    more = len(error.errors()) - 1
    tail = f" (and {more} more problem{'s' if more > 1 else ''})" if more else ""
    return f"{source}{loc or 'config'}: {msg}{tail}"
