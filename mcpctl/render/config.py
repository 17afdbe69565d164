"""The agent config of ``mcpctl render``: YAML, validated, unknown keys rejected.

::

    cache_dir: /var/cache/mcpctl-render     # optional: the last-good cache
    templates:
      - src: upstream.conf.j2               # relative to this file
        dest: /etc/nginx/conf.d/upstream.conf
        perms: "0644"
        backup: true                        # keep the previous file as dest.bak
        reads:
          keys: [/app/nginx/port]
          prefixes: [/app/nginx/]
          mcp: true                         # the typed MCP config (McpConfigView)
          instances: true                   # the live fleet: /mcp/instances/ and
                                            # /mcp/operator/instances/ (drains)
          protect_threshold: 0.5            # for `serving` (the picker's default)
        check_cmd: nginx -t -c {src}        # {src}: the candidate file
        reload_cmd: nginx -s reload
        wait: {min: 0.5, max: 5}            # debounce, seconds

Every error is one line naming where it is (``templates[0].wait.max: ...``).
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from mcpctl import limits
from mcpctl.fleet import keys as fleet_keys
from mcpctl.mcp import layout

# What `reads.instances` covers: registrations and their operator state (a
# drain changes the second only).
FLEET_READS = (fleet_keys.INSTANCES, fleet_keys.OPERATOR)
# ... and the one prefix watched for both: one watch is one consistent stream,
# so a render never waits for an idle second watch to catch up (~1 s).
FLEET_WATCH = layout.ROOT  # "/mcp/", as InstancePicker watches


class RenderConfigError(Exception):
    """The agent config cannot be used; the message is one line."""


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


Seconds = Annotated[float, Field(ge=0, le=limits.RENDER_WAIT_S_MAX)]
KeyName = Annotated[str, Field(min_length=1, max_length=limits.KEY_BYTES_MAX)]


class Wait(_Strict):
    """Render ``min`` seconds after the last change of a burst, but no later than
    ``max`` seconds after its first (consul-template's ``wait``); 0: at once."""

    min: Seconds = 0.0
    max: Seconds | None = None  # default: 4 x min

    @model_validator(mode="after")
    def _ordered(self) -> Wait:
        if self.max is not None and self.max < self.min:
            raise ValueError(f"max ({self.max}) is below min ({self.min})")
        return self

    @property
    def max_s(self) -> float:
        return self.max if self.max is not None else 4 * self.min


class Reads(_Strict):
    keys: list[KeyName] = []
    prefixes: list[KeyName] = []
    mcp: bool = False
    instances: bool = False
    # `serving` = what a picker would choose from (mcpctl.fleet.select.candidates).
    protect_threshold: float = Field(default=limits.FLEET_PROTECT_THRESHOLD_DEFAULT, ge=0, le=1)

    @model_validator(mode="after")
    def _bounded(self) -> Reads:
        count = len(self.keys) + len(self.prefixes)
        if count > limits.RENDER_READS_MAX:
            raise ValueError(f"{count} keys and prefixes; at most {limits.RENDER_READS_MAX}")
        if not count and not self.mcp and not self.instances:
            raise ValueError("reads nothing: give keys, prefixes, mcp or instances")
        return self

    def covers(self, key: str) -> bool:
        """Whether a change of ``key`` concerns a template with these reads."""
        return (
            key in self.keys
            or any(key.startswith(p) for p in self.prefixes)
            or (self.instances and key.startswith(FLEET_READS))
        )


class Template(_Strict):
    name: str = ""  # default: the dest path
    src: Path
    dest: Path
    perms: int = 0o644
    backup: bool = False
    reads: Reads
    check_cmd: str | None = None
    reload_cmd: str | None = None
    command_timeout_s: float = Field(
        default=limits.RENDER_CMD_TIMEOUT_S_DEFAULT, gt=0, le=limits.RENDER_CMD_TIMEOUT_S_MAX
    )
    wait: Wait = Wait()

    @field_validator("perms", mode="before")
    @classmethod
    def _octal(cls, value: Any) -> Any:
        # "0644" (quoted) is octal text; unquoted 0644 already is 420 (YAML 1.1 octal).
        if isinstance(value, str):
            try:
                value = int(value, 8)
            except ValueError:
                raise ValueError(f"{value!r} is not an octal mode like '0644'") from None
        if isinstance(value, int) and not 0 <= value <= 0o777:
            raise ValueError(f"{value:o} (octal) is not a file mode between 0 and 0777")
        return value

    @field_validator("dest")
    @classmethod
    def _absolute(cls, value: Path) -> Path:
        if not value.is_absolute():
            raise ValueError(f"{value} is not an absolute path")
        return value

    @property
    def label(self) -> str:
        return self.name or str(self.dest)


class AgentConfig(_Strict):
    cache_dir: Path | None = None
    templates: list[Template] = Field(min_length=1, max_length=limits.RENDER_TEMPLATES_MAX)

    @model_validator(mode="after")
    def _distinct(self) -> AgentConfig:
        dests = [t.dest for t in self.templates]
        for dest in dests:
            if dests.count(dest) > 1:
                raise ValueError(f"two templates write {dest}")
        return self


def _one_line(e: ValidationError) -> str:
    problems = []
    for err in e.errors():
        where = "".join(f"[{p}]" if isinstance(p, int) else f".{p}" for p in err["loc"])
        msg = str(err["msg"]).removeprefix("Value error, ")
        problems.append(f"{where.lstrip('.') or 'config'}: {msg}")
    more = f" (and {len(problems) - 3} more)" if len(problems) > 3 else ""
    return "; ".join(problems[:3]) + more


def parse_config(text: str, base: Path) -> AgentConfig:
    """The config in ``text``; relative ``src`` paths are resolved against ``base``."""
    try:
        doc = yaml.safe_load(text)
    except yaml.YAMLError as e:
        raise RenderConfigError(f"not YAML: {' '.join(str(e).split())}") from None
    if not isinstance(doc, dict):
        raise RenderConfigError("the agent config must be a mapping with `templates`")
    try:
        config = AgentConfig.model_validate(doc)
    except ValidationError as e:
        raise RenderConfigError(_one_line(e)) from None
    templates = [t.model_copy(update={"src": base / t.src}) for t in config.templates]
    return config.model_copy(update={"templates": templates})


def load_config(path: Path) -> AgentConfig:
    try:
        with open(path, "rb") as f:
            data = f.read(limits.RENDER_CONFIG_BYTES_MAX + 1)
    except OSError as e:
        raise RenderConfigError(f"cannot read {path}: {e.strerror}") from None
    if len(data) > limits.RENDER_CONFIG_BYTES_MAX:
        raise RenderConfigError(f"{path} is over {limits.RENDER_CONFIG_BYTES_MAX} bytes")
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        raise RenderConfigError(f"{path} is not UTF-8") from None
    return parse_config(text, path.parent)
