"""Where the live fleet lives in the keyspace (docs/fleet.md). No imports:
``mcpctl.mcp`` reads these to keep the fleet out of ``apply``/``export``.

::

    /mcp/instances/<model>/<id>            an instance: registration + live load (JSON),
                                           attached to the instance's lease
    /mcp/operator/instances/<model>/<id>   operator state (JSON), no lease; an
                                           instance's token cannot write it

A model name may hold ``/`` (``mcpctl.mcp.schema``); an instance id may not,
so the id is the last part of the key and the model is the rest.
"""

from __future__ import annotations

import re
from typing import Final

INSTANCES: Final = "/mcp/instances/"
OPERATOR: Final = "/mcp/operator/instances/"
# Every prefix under /mcp/ that is live state, not desired config: apply,
# export and the MCP view leave keys under these alone.
FLEET_PREFIXES: Final = (INSTANCES, "/mcp/operator/")

# Instance ids: one key part, no '/'.
_ID_RE: Final = re.compile(r"[A-Za-z0-9][A-Za-z0-9._:@-]{0,127}")
ID_RULE: Final = "1..128 characters of A-Z a-z 0-9 . _ : @ -, starting with a letter or digit"


def is_fleet_key(key: str) -> bool:
    """Is ``key`` live fleet state (kept out of the MCP document)?"""
    return key.startswith(FLEET_PREFIXES)


def valid_id(instance_id: str) -> bool:
    return _ID_RE.fullmatch(instance_id) is not None


def instance_key(model: str, instance_id: str) -> str:
    return f"{INSTANCES}{model}/{instance_id}"


def operator_key(model: str, instance_id: str) -> str:
    return f"{OPERATOR}{model}/{instance_id}"


def model_prefix(model: str) -> str:
    """The prefix of one model's instances (its trailing '/' keeps ``m`` from
    covering ``m2``)."""
    return f"{INSTANCES}{model}/"


def split(key: str, root: str = INSTANCES) -> tuple[str, str] | None:
    """``(model, id)`` of a key under ``root``, or None when it is not one."""
    if not key.startswith(root):
        return None
    model, sep, instance_id = key[len(root) :].rpartition("/")
    if not sep or not model or not valid_id(instance_id):
        return None
    return model, instance_id


__all__ = [
    "FLEET_PREFIXES",
    "ID_RULE",
    "INSTANCES",
    "OPERATOR",
    "instance_key",
    "is_fleet_key",
    "model_prefix",
    "operator_key",
    "split",
    "valid_id",
]
