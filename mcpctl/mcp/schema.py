"""The MCP document: what an MCP deployment configures, validated (pydantic v2).

::

    server:      host, port, context_path
    models:      [name, endpoint, token_file | token_env, max_retries, timeout_s, weight]
    routing:     policy, health_check_interval_s, timeout_s, fallback, fallback_model
    auth:        enabled, api_keys [name, token_file | token_env]
    rate_limits: {identity: {requests_per_s, burst}}
    logging:     level

Guarantees:

- Unknown fields are refused (``extra="forbid"``), types are strict (YAML
  ``port: "80"`` is not a port), every value has a range.
- Secrets are references only (``token_file``, ``token_env``): the config
  store is replicated to every member and readable by every reader, so an
  inline ``token`` is refused (its type is ``SecretStr``, so it never shows in
  a repr either).
- A failure is a ``SchemaError`` with one line per problem, each naming the
  path (``models[2].endpoint: not an http(s) URL``). Lines are built from
  pydantic's ``loc`` and message only, never from the input, so no value
  (secret or not) is ever echoed.
- ``models`` come out sorted by name (the key layout stores one key per
  model, so order carries no meaning; see docs/mcp-config.md).
"""

from __future__ import annotations

import re
import urllib.parse
from collections.abc import Callable, Sequence
from typing import Annotated, Any, Final, Literal

import yaml
from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    SecretStr,
    ValidationError,
    model_validator,
)
from pydantic_core import PydanticCustomError

from mcpctl import limits
from mcpctl.errors import InvalidArgument

# An MCP document (YAML text) is at most this big.
DOCUMENT_BYTES_MAX: Final = 256 * limits.KIB
# One apply is one txn (at most limits.TXN_OPS_MAX ops): with these caps a
# document is at most 4 + 64 + 32 = 100 keys.
MODELS_MAX: Final = 64
RATE_LIMITS_MAX: Final = 32
API_KEYS_MAX: Final = 32
# A SchemaError message lists at most this many problems (all are in .problems).
PROBLEMS_SHOWN_MAX: Final = 20

Loc = tuple[int | str, ...]
# Renders a pydantic loc as the path shown to people.
Where = Callable[[Loc], str]

_NAME_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9._:@-]*")
_ENV_RE = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_HOST_RE = re.compile(r"[A-Za-z0-9._:\[\]-]+")
_CROSS = "mcp_cross"


class SchemaError(InvalidArgument):
    """The document (or the keys under /mcp/) is not a valid MCP config."""

    def __init__(self, problems: Sequence[str], what: str = "MCP document") -> None:
        assert problems, "a SchemaError needs at least one problem"
        self.problems = list(problems)
        super().__init__(describe(self.problems, f"invalid {what}"))


def describe(problems: Sequence[str], title: str) -> str:
    """``title: problem`` for one problem, else a title line and one line per problem."""
    if len(problems) == 1:
        return f"{title}: {problems[0]}"
    shown = list(problems[:PROBLEMS_SHOWN_MAX])
    if len(problems) > len(shown):
        shown.append(f"... and {len(problems) - len(shown)} more")
    return f"{title} ({len(problems)} problems):\n" + "\n".join(f"  {p}" for p in shown)


def _fail(kind: str, message: str) -> PydanticCustomError:
    return PydanticCustomError(f"mcp_{kind}", message)


# -- field checks (messages never include the value) ----------------------------
def _check_name(value: str) -> str:
    """Model names become key suffixes (/mcp/models/<name>); '/' may separate parts."""
    parts = value.split("/")
    if len(value) > 128 or not all(_NAME_RE.fullmatch(p) for p in parts):
        raise _fail(
            "name",
            "1..128 characters of A-Z a-z 0-9 . _ : @ - (and / between parts), "
            "starting with a letter or digit",
        )
    return value


def _check_identity(value: str) -> str:
    if len(value) > 64 or not _NAME_RE.fullmatch(value):
        raise _fail("identity", "1..64 characters of A-Z a-z 0-9 . _ : @ -")
    return value


def _check_env(value: str) -> str:
    if len(value) > 128 or not _ENV_RE.fullmatch(value):
        raise _fail("env", "not an environment variable name")
    return value


def _check_file(value: str) -> str:
    if not value or len(value) > 4096 or "\x00" in value or value != value.strip():
        raise _fail("path", "not a file path")
    return value


def _check_url(value: str) -> str:
    try:
        parts = urllib.parse.urlsplit(value)
        port_ok = parts.port is None or parts.port > 0
    except ValueError:
        raise _fail("url", "not an http(s) URL") from None
    if (
        parts.scheme not in ("http", "https")
        or not parts.hostname
        or not port_ok
        or any(c.isspace() for c in value)
        or len(value) > 2048
    ):
        raise _fail("url", "not an http(s) URL")
    if parts.username is not None or parts.password is not None:
        raise _fail("url_credentials", "credentials in the URL; use token_file or token_env")
    return value


def _check_host(value: str) -> str:
    if len(value) > 253 or not _HOST_RE.fullmatch(value):
        raise _fail("host", "not a host name or IP address")
    return value


def _check_context_path(value: str) -> str:
    if (
        not value.startswith("/")
        or len(value) > 256
        or any(c.isspace() or c in "?#\\" for c in value)
    ):
        raise _fail("context_path", "must start with / and hold no spaces, ? or #")
    return value


ModelName = Annotated[str, AfterValidator(_check_name)]
Identity = Annotated[str, AfterValidator(_check_identity)]
EnvName = Annotated[str, AfterValidator(_check_env)]
FilePath = Annotated[str, AfterValidator(_check_file)]
Url = Annotated[str, AfterValidator(_check_url)]
Policy = Literal["dynamic", "least-request", "round-robin", "weighted"]
Fallback = Literal["fail", "any-healthy", "model"]
LogLevel = Literal["debug", "info", "warning", "error"]


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, strict=True)


def _no_inline_token(value: object) -> object:
    if value is not None:
        raise _fail(
            "inline_secret",
            "inline secrets are not stored in the config store; use token_file or token_env",
        )
    return value


# Accepted by the parser only to be refused with a clear message (never stored,
# never shown: excluded from dumps and reprs).
InlineToken = Annotated[SecretStr | None, BeforeValidator(_no_inline_token)]


def _one_token_source(token_file: str | None, token_env: str | None, *, required: bool) -> None:
    if token_file is not None and token_env is not None:
        raise _fail("token_source", "give token_file or token_env, not both")
    if required and token_file is None and token_env is None:
        raise _fail("token_source", "give token_file or token_env")


class Server(_Model):
    """Where the MCP server listens."""

    host: Annotated[str, AfterValidator(_check_host)] = "0.0.0.0"
    port: int = Field(default=8080, ge=1, le=65535)
    context_path: Annotated[str, AfterValidator(_check_context_path)] = "/mcp"


class Model(_Model):
    """One model endpoint; its token (if any) is in a file or an environment variable."""

    name: ModelName
    endpoint: Url
    token_file: FilePath | None = None
    token_env: EnvName | None = None
    token: InlineToken = Field(default=None, exclude=True, repr=False)
    max_retries: int = Field(default=2, ge=0, le=10)
    timeout_s: float = Field(default=30.0, gt=0, le=600)
    weight: int = Field(default=1, ge=0, le=1000)

    @model_validator(mode="after")
    def _token_source(self) -> Model:
        _one_token_source(self.token_file, self.token_env, required=False)
        return self


class Routing(_Model):
    """How requests are spread over the models."""

    policy: Policy = "round-robin"
    health_check_interval_s: float = Field(default=10.0, gt=0, le=3600)
    timeout_s: float = Field(default=30.0, gt=0, le=600)
    # When the chosen model fails: return the error, try any healthy model,
    # or send the request to `fallback_model`.
    fallback: Fallback = "fail"
    fallback_model: ModelName | None = None

    @model_validator(mode="after")
    def _fallback(self) -> Routing:
        if self.fallback == "model" and self.fallback_model is None:
            raise _fail("fallback", "fallback 'model' needs fallback_model")
        if self.fallback != "model" and self.fallback_model is not None:
            raise _fail("fallback", "fallback_model is only used with fallback 'model'")
        return self


class ApiKey(_Model):
    """A client identity and where its key is (never the key itself)."""

    name: Identity
    token_file: FilePath | None = None
    token_env: EnvName | None = None
    token: InlineToken = Field(default=None, exclude=True, repr=False)

    @model_validator(mode="after")
    def _token_source(self) -> ApiKey:
        _one_token_source(self.token_file, self.token_env, required=True)
        return self


class Auth(_Model):
    enabled: bool = False
    api_keys: list[ApiKey] = Field(default_factory=list, max_length=API_KEYS_MAX)

    @model_validator(mode="after")
    def _keys_when_enabled(self) -> Auth:
        if self.enabled and not self.api_keys:
            raise _fail("auth", "enabled needs at least one entry in api_keys")
        return self


class RateLimit(_Model):
    """Requests per second for one identity (an api key name, or `default`)."""

    requests_per_s: float = Field(gt=0, le=1_000_000)
    burst: int | None = Field(default=None, ge=1, le=1_000_000)


class Logging(_Model):
    level: LogLevel = "info"


class McpConfig(_Model):
    """The whole MCP document."""

    server: Server = Field(default_factory=Server)
    models: list[Model] = Field(min_length=1, max_length=MODELS_MAX)
    routing: Routing = Field(default_factory=Routing)
    auth: Auth = Field(default_factory=Auth)
    rate_limits: dict[Identity, RateLimit] = Field(default_factory=dict, max_length=RATE_LIMITS_MAX)
    logging: Logging = Field(default_factory=Logging)

    @model_validator(mode="after")
    def _cross_checks(self) -> McpConfig:
        problems: list[tuple[Loc, str]] = []
        seen: dict[str, int] = {}
        for i, m in enumerate(self.models):
            if m.name in seen:
                problems.append((("models", i, "name"), f"duplicate of models[{seen[m.name]}]"))
            seen.setdefault(m.name, i)
        fallback = self.routing.fallback_model
        if fallback is not None and fallback not in seen:
            problems.append((("routing", "fallback_model"), "names no model in models"))
        keys: dict[str, int] = {}
        for i, k in enumerate(self.auth.api_keys):
            if k.name in keys:
                problems.append(
                    (("auth", "api_keys", i, "name"), f"duplicate of auth.api_keys[{keys[k.name]}]")
                )
            keys.setdefault(k.name, i)
        if self.routing.policy == "weighted" and all(m.weight == 0 for m in self.models):
            problems.append((("routing", "policy"), "'weighted' needs a model with weight > 0"))
        if problems:
            raise PydanticCustomError(
                _CROSS, "{count} problems", {"count": len(problems), "problems": problems}
            )
        ordered = sorted(self.models, key=lambda m: m.name)
        if ordered != self.models:
            return self.model_copy(update={"models": ordered})
        return self


# -- error rendering --------------------------------------------------------------
def dotted(loc: Loc) -> str:
    """('models', 2, 'endpoint') -> 'models[2].endpoint'; () -> 'document'.

    A mapping key that is itself invalid is not shown (it may be a pasted
    secret): ('rate_limits', 'x y', '[key]') -> 'rate_limits (a name)'.
    """
    if len(loc) >= 2 and loc[-1] == "[key]":
        return f"{dotted(loc[:-2])} (a name)"
    out = ""
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            out += f".{part}" if out else str(part)
    return out or "document"


_MESSAGES = {
    "missing": "required",
    "extra_forbidden": "unknown field",
}


def problems_of(error: ValidationError, where: Where = dotted) -> list[str]:
    """One line per pydantic error: ``path: message``. Inputs are never included."""
    out: list[str] = []
    for e in error.errors(include_url=False, include_input=False, include_context=True):
        if e["type"] == _CROSS:
            out += [f"{where(loc)}: {msg}" for loc, msg in e.get("ctx", {}).get("problems", ())]
            continue
        msg = _MESSAGES.get(e["type"], e["msg"])
        out.append(f"{where(tuple(e['loc']))}: {msg[:1].lower()}{msg[1:]}")
    return out


def validate(data: Any, where: Where = dotted, what: str = "MCP document") -> McpConfig:
    """The config from already-parsed data; ``SchemaError`` naming every bad path."""
    if not isinstance(data, dict):
        raise SchemaError(["document: expected a mapping at the top level"], what)
    try:
        return McpConfig.model_validate(data)
    except ValidationError as e:
        # `from None`: pydantic's own rendering includes the input values.
        raise SchemaError(problems_of(e, where), what) from None


# -- YAML in and out ---------------------------------------------------------------
class _Loader(yaml.SafeLoader):
    """safe_load that refuses a mapping with the same key twice (YAML keeps the last)."""


def _mapping(loader: _Loader, node: yaml.MappingNode) -> dict[Any, Any]:
    seen: set[Any] = set()
    for key_node, _ in node.value:
        key = loader.construct_object(key_node)
        if isinstance(key, str | int | float | bool) and key in seen:
            raise yaml.constructor.ConstructorError(
                None, None, f"duplicate key {key!r}", key_node.start_mark
            )
        seen.add(key)
    return loader.construct_mapping(node)


_Loader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _mapping)


def load_yaml(text: str, what: str = "document") -> Any:
    """YAML (or JSON) text; ``InvalidArgument`` says where it breaks, not what it holds."""
    try:
        return yaml.load(text, Loader=_Loader)  # a SafeLoader: plain data only
    except yaml.MarkedYAMLError as e:
        mark = e.problem_mark or e.context_mark
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        raise InvalidArgument(
            f"{what}: not valid YAML{where}: {e.problem or 'syntax error'}"
        ) from None
    except yaml.YAMLError:
        raise InvalidArgument(f"{what}: not valid YAML") from None


def parse_document(text: str | bytes) -> McpConfig:
    """Parse and validate an MCP document (YAML or JSON text)."""
    if len(text) > DOCUMENT_BYTES_MAX:
        raise InvalidArgument(
            f"document: {len(text)} bytes is over the limit of {DOCUMENT_BYTES_MAX}"
        )
    if isinstance(text, bytes):
        try:
            text = text.decode("utf-8")
        except UnicodeDecodeError:
            raise InvalidArgument("document: not valid UTF-8") from None
    data = load_yaml(text)
    if data is None:
        raise SchemaError(["document: empty"])
    return validate(data)


def to_data(doc: McpConfig) -> dict[str, Any]:
    """Plain data (what YAML/JSON hold): unset optional fields left out."""
    data: dict[str, Any] = doc.model_dump(mode="json", exclude_none=True)
    return data


def to_yaml(doc: McpConfig, *, comment: str = "") -> str:
    """The document as YAML, sections in schema order; ``parse_document`` reads it back."""
    head = "".join(f"# {line}\n" for line in comment.splitlines())
    body = yaml.safe_dump(to_data(doc), sort_keys=False, allow_unicode=True, width=100)
    return head + body


__all__ = [
    "DOCUMENT_BYTES_MAX",
    "MODELS_MAX",
    "ApiKey",
    "Auth",
    "Logging",
    "McpConfig",
    "Model",
    "RateLimit",
    "Routing",
    "SchemaError",
    "Server",
    "describe",
    "dotted",
    "load_yaml",
    "parse_document",
    "problems_of",
    "to_data",
    "to_yaml",
    "validate",
]
