"""`mcpctl instances` and `drain` output (mcpctl/cli/output.py): the same rows in
each format, the JSON being the contract of docs/cli.md. No network."""

from __future__ import annotations

import io
import json

from mcpctl.cli.output import printer
from mcpctl.fleet.operator import Row
from mcpctl.fleet.schema import InstanceInfo, Load, OperatorState
from mcpctl.fleet.select import Instance

INFO = InstanceInfo(endpoint="http://10.0.0.7:8000", weight=2, load=Load(in_flight=3))
ROWS = [
    Row(Instance("llama", "a1", INFO, OperatorState(draining=True), 0x694D, 5), "llama", "a1", 9),
    Row(None, "llama", "bad", None, "endpoint: not an http(s) URL"),
]


def render(fmt: str) -> str:
    out = io.StringIO()
    printer(fmt, out).instances([r.json() for r in ROWS])
    return out.getvalue()


def test_json_is_the_documented_contract() -> None:
    got = json.loads(render("json"))["instances"]
    assert got[0] == {
        "model": "llama", "id": "a1", "ttl": 9, "endpoint": "http://10.0.0.7:8000",
        "healthy": True, "in_flight": 3, "queue": 0, "latency_ms": 0.0, "weight": 2,
        "enabled": True, "draining": True, "lease": "000000000000694d", "zone": "",
        "version": "",
    }  # fmt: skip
    assert got[1] == {
        "model": "llama",
        "id": "bad",
        "ttl": None,
        "invalid": "endpoint: not an http(s) URL",
    }


def test_simple_and_table_show_the_columns() -> None:
    assert render("simple").splitlines() == [
        "llama a1 http://10.0.0.7:8000 True 3 2 9 True",
        "llama bad - - - - - -",
    ]
    table = render("table")
    assert "ttl left" in table and "draining" in table and "http://10.0.0.7:8000" in table


def test_operator_state_line() -> None:
    out = io.StringIO()
    printer("simple", out).operator("llama", "a1", OperatorState(draining=True).model_dump(), 42)
    assert out.getvalue() == "llama/a1: draining (revision 42)\n"
    out = io.StringIO()
    printer("json", out).operator("llama", "a1", OperatorState().model_dump(), 43)
    assert json.loads(out.getvalue()) == {
        "model": "llama", "id": "a1", "revision": 43, "enabled": True, "draining": False,
        "weight": None,
    }  # fmt: skip
