"""Fleet values and keys (mcpctl/fleet/schema.py, keys.py, registration.report_due):
bad input is refused naming the field, never the value; the rate limit and
deadband of load reports; fleet keys stay out of the MCP document and apply."""

from __future__ import annotations

import asyncio
import json
import re

import pytest

from mcpctl import limits
from mcpctl._proto.mcp.v1 import kv_pb2 as kv
from mcpctl.fleet import keys
from mcpctl.fleet.registration import Registration, report_due
from mcpctl.fleet.schema import Load, decode_instance, decode_operator, instance_info
from mcpctl.mcp import layout, plan
from mcpctl.mcp.schema import SchemaError


def test_bad_endpoint_is_refused_naming_the_field() -> None:
    with pytest.raises(SchemaError) as e:
        instance_info({"endpoint": "ftp://secret-host/x"})
    assert e.value.problems == ["endpoint: not an http(s) URL"]
    assert "secret-host" not in e.value.message


def test_unknown_fields_are_refused_naming_them() -> None:
    with pytest.raises(SchemaError) as e:
        instance_info({"endpoint": "http://a.test:1", "colour": "red", "load": {"cpu": 1}})
    assert sorted(e.value.problems) == ["colour: unknown field", "load.cpu: unknown field"]


def test_registration_validates_before_touching_the_network() -> None:
    client: object = None  # never used: validation comes first
    with pytest.raises(SchemaError, match="endpoint: not an http"):
        Registration(client, model="m", endpoint="not a url")  # type: ignore[arg-type]
    with pytest.raises(SchemaError, match="weight"):
        Registration(client, model="m", endpoint="http://a.test:1", weight=-1)  # type: ignore[arg-type]
    with pytest.raises(SchemaError, match=r"^invalid instance: id: "):
        Registration(client, model="m", endpoint="http://a.test:1", instance_id="a/b")  # type: ignore[arg-type]
    with pytest.raises(SchemaError, match="model: "):
        Registration(client, model="bad model", endpoint="http://a.test:1")  # type: ignore[arg-type]


def test_stored_values_decode_and_name_the_key() -> None:
    key = keys.instance_key("m", "a1")
    info = decode_instance(key, b'{"endpoint": "http://a.test:1", "weight": 3}')
    assert info.weight == 3 and info.load.healthy
    with pytest.raises(SchemaError, match=re.escape(f"invalid {key}: {key}: not JSON")):
        decode_instance(key, b"{")
    assert decode_operator(keys.operator_key("m", "a1"), b'{"draining": true}').draining


def test_keys_split_from_the_right() -> None:
    assert keys.split("/mcp/instances/org/llama/i-1") == ("org/llama", "i-1")
    assert keys.split("/mcp/operator/instances/m/i-1", keys.OPERATOR) == ("m", "i-1")
    assert keys.split("/mcp/instances/m") is None
    assert keys.split("/mcp/models/m/x") is None
    assert keys.is_fleet_key("/mcp/instances/m/a") and keys.is_fleet_key("/mcp/operator/x")
    assert not keys.is_fleet_key("/mcp/models/m")


def test_report_due_rate_limit_deadband_refresh() -> None:
    written = Load(in_flight=10, latency_ms=100.0)
    interval = limits.FLEET_REPORT_INTERVAL_S_MIN
    assert report_due(None, written, 0.0)  # the first report
    big = Load(in_flight=20, latency_ms=100.0)
    assert not report_due(written, big, interval / 2)  # at most once per interval
    assert report_due(written, big, interval)
    small = Load(in_flight=11, latency_ms=110.0)  # inside the deadband
    assert not report_due(written, small, interval * 5)
    assert report_due(written, small, limits.FLEET_REPORT_REFRESH_S)  # the refresh
    assert report_due(written, Load(in_flight=10, latency_ms=100.0, healthy=False), interval)
    assert report_due(Load(), Load(in_flight=limits.FLEET_DEADBAND_REQUESTS_MIN), interval)
    assert report_due(written, Load(in_flight=10, latency_ms=130.0), interval)


CONFIG = {
    "/mcp/models/m": b'{"endpoint": "http://m.test:80"}',
    "/mcp/instances/m/a1": b'{"endpoint": "http://a1.test:80"}',
    "/mcp/operator/instances/m/a1": b'{"draining": true}',
}


def test_layout_decode_skips_the_fleet() -> None:
    doc = layout.decode(CONFIG)
    assert [m.name for m in doc.models] == ["m"]


class Backend:
    """The KV calls plan.apply makes, over a dict (the guard is checked by the store
    tests; here: what is read, written and compared)."""

    def __init__(self, kvs: dict[str, bytes]) -> None:
        self.kvs = kvs
        self.txns: list[kv.TxnRequest] = []

    async def range(self, req: kv.RangeRequest, timeout_s: float) -> kv.RangeResponse:
        resp = kv.RangeResponse()
        resp.header.revision = 10
        for k, v in sorted(self.kvs.items()):
            if k.encode().startswith(req.key):
                resp.kvs.add(key=k.encode(), value=v)
        return resp

    async def txn(self, req: kv.TxnRequest, timeout_s: float) -> kv.TxnResponse:
        self.txns.append(req)
        resp = kv.TxnResponse(succeeded=True)
        resp.header.revision = 11
        return resp


def test_apply_leaves_the_fleet_alone_and_does_not_guard_it() -> None:
    backend = Backend(dict(CONFIG))
    doc = "models: [{name: m, endpoint: 'http://m.test:81'}]"
    out = asyncio.run(
        plan.apply(backend, doc, dry_run=False, expected_revision=0, request_id="r", timeout_s=5.0)
    )
    assert ("change", "/mcp/models/m") in [(c.op, c.key) for c in out.changes]
    assert not any(keys.is_fleet_key(c.key) for c in out.changes)
    (txn,) = backend.txns
    guarded = {c.key.decode() for c in txn.compare}
    assert not any(keys.is_fleet_key(k) for k in guarded)
    assert "/mcp/" not in guarded and "/mcp/models/" in guarded
    export, _ = asyncio.run(plan.export(backend, 0, 5.0))
    assert "instances" not in export and json.dumps("http://m.test:80")[1:-1] in export
