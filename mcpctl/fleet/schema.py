"""The JSON values of the fleet's keys (docs/fleet.md), validated with pydantic.

- ``InstanceInfo``: ``/mcp/instances/<model>/<id>``: what the instance is
  (endpoint, weight, capacity, zone, tags, version, started_at) and its last
  reported ``load`` (in_flight, queue, latency_ms, healthy, at);
- ``OperatorState``: ``/mcp/operator/instances/<model>/<id>``: enabled,
  draining, an optional weight override. Operator state wins over what the
  instance says, and outlives it (it has no lease).

Unknown fields are refused and every problem names its field
(``endpoint: not an http(s) URL``), never the value (as ``mcpctl.mcp.schema``).
"""

from __future__ import annotations

import json
from typing import Annotated, Any, Final

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, ValidationError

from mcpctl.fleet import keys
from mcpctl.mcp.schema import SchemaError, Url, problems_of

# A value under the fleet prefixes is at most this big (a registration is ~300 bytes).
VALUE_BYTES_MAX: Final = 16 * 1024
TAGS_MAX: Final = 32
WEIGHT_MAX: Final = 1000


def _short(value: str) -> str:
    if len(value) > 128:
        raise ValueError("at most 128 characters")
    return value


Short = Annotated[str, AfterValidator(_short)]


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, strict=True)


class Load(_Model):
    """What the instance last reported about itself."""

    in_flight: int = Field(default=0, ge=0)
    queue: int = Field(default=0, ge=0)
    latency_ms: float = Field(default=0.0, ge=0)
    healthy: bool = True
    # Wall-clock seconds of the report (informational: clocks differ between hosts).
    at: float = Field(default=0.0, ge=0)


class InstanceInfo(_Model):
    """One registered instance of a model."""

    endpoint: Url
    weight: int = Field(default=1, ge=0, le=WEIGHT_MAX)
    # Concurrent requests it takes (0: not said).
    capacity: int = Field(default=0, ge=0)
    zone: Short = ""
    tags: dict[Short, Short] = Field(default_factory=dict, max_length=TAGS_MAX)
    version: Short = ""
    started_at: float = Field(default=0.0, ge=0)
    load: Load = Load()


class OperatorState(_Model):
    """What an operator decided for one instance (no key: enabled, not draining)."""

    enabled: bool = True
    draining: bool = False
    # Replaces the instance's own weight while set.
    weight: int | None = Field(default=None, ge=0, le=WEIGHT_MAX)


DEFAULT_OPERATOR: Final = OperatorState()
# An operator state that cannot be read counts as a drain (docs/fleet.md): a
# bad hand-written value must not put an instance back into service.
UNREADABLE_OPERATOR: Final = OperatorState(draining=True)


def _validate(model: type[_Model], data: Any, what: str) -> Any:
    if not isinstance(data, dict):
        raise SchemaError([f"{what}: expected a JSON object"], what)
    try:
        return model.model_validate(data)
    except ValidationError as e:
        raise SchemaError(problems_of(e), what) from None


def instance_info(data: Any, what: str = "instance") -> InstanceInfo:
    """``SchemaError`` (``INVALID_ARGUMENT``) naming each bad or unknown field."""
    result: InstanceInfo = _validate(InstanceInfo, data, what)
    return result


def operator_state(data: Any, what: str = "operator state") -> OperatorState:
    result: OperatorState = _validate(OperatorState, data, what)
    return result


def _load_json(key: str, value: bytes) -> Any:
    if len(value) > VALUE_BYTES_MAX:
        raise SchemaError([f"{key}: {len(value)} bytes, over {VALUE_BYTES_MAX}"], key)
    try:
        return json.loads(value)
    except ValueError:
        raise SchemaError([f"{key}: not JSON"], key) from None


def decode_instance(key: str, value: bytes) -> InstanceInfo:
    return instance_info(_load_json(key, value), key)


def decode_operator(key: str, value: bytes) -> OperatorState:
    return operator_state(_load_json(key, value), key)


def encode(value: _Model) -> bytes:
    return json.dumps(value.model_dump(mode="json"), separators=(",", ":")).encode()


def check_id(instance_id: str) -> str:
    if not keys.valid_id(instance_id):
        raise SchemaError([f"id: {keys.ID_RULE}"], "instance")
    return instance_id


__all__ = [
    "DEFAULT_OPERATOR",
    "UNREADABLE_OPERATOR",
    "InstanceInfo",
    "Load",
    "OperatorState",
    "check_id",
    "decode_instance",
    "decode_operator",
    "encode",
    "instance_info",
    "operator_state",
]
