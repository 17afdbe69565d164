"""The live fleet: model instances register on leases, report their load at a
bounded rate, and routers pick from what is alive (docs/fleet.md).

- ``keys``: where it lives (``/mcp/instances/<model>/<id>``, operator state
  under ``/mcp/operator/instances/``); no imports, so ``mcpctl.mcp`` can keep
  the fleet out of apply/export cheaply;
- ``schema``: the JSON values (pydantic; errors name the field);
- ``select``: the picking rules and the fallback rule, pure;
- ``registration``: ``Registration`` (an instance's side);
- ``picker``: ``InstancePicker`` (a router's side);
- ``operator``: drain/undrain (the CLI's and the console's side).
"""

from __future__ import annotations

__all__ = ["keys", "operator", "picker", "registration", "schema", "select"]
