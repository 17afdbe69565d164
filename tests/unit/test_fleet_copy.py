"""The pickers' copy of the fleet (mcpctl/fleet/copy.py), change by change: an
invalid value is skipped and named (then forgotten once fixed); an unreadable
operator value counts as a drain; FLEET_PICKER_INSTANCES_MAX bounds the copy;
a model's list is rebuilt only when one of its keys changes. No network."""

from __future__ import annotations

from unittest import mock

from mcpctl.client import KeyValue
from mcpctl.client.watcher import Change
from mcpctl.fleet import keys
from mcpctl.fleet.copy import FleetCopy


def put(copy: FleetCopy, key: str, value: bytes, revision: int = 1) -> str | None:
    kv = KeyValue(key, value, revision, revision, 1, lease=7)
    return copy.apply(Change("PUT", key, value, None, revision), kv)


def delete(copy: FleetCopy, key: str) -> str | None:
    return copy.apply(Change("DELETE", key, None, b"", 9), None)


GOOD = b'{"endpoint": "http://a.test:80"}'


def test_instances_come_and_go_with_their_keys() -> None:
    copy = FleetCopy()
    assert put(copy, keys.instance_key("m", "a"), GOOD) == "m"
    (a,) = copy.instances("m")
    assert (a.id, a.endpoint, a.lease) == ("a", "http://a.test:80", 7)
    assert delete(copy, keys.instance_key("m", "a")) == "m"
    assert copy.instances("m") == []


def test_an_invalid_value_is_skipped_and_named_until_fixed() -> None:
    copy = FleetCopy()
    key = keys.instance_key("m", "a")
    put(copy, key, b'{"endpoint": "ftp://x", "colour": 1}')
    assert copy.instances("m") == []
    assert "endpoint: not an http(s) URL" in copy.invalid[key]
    assert "colour: unknown field" in copy.invalid[key]
    put(copy, key, GOOD, 2)
    assert len(copy.instances("m")) == 1 and key not in copy.invalid


def test_an_unreadable_operator_value_is_a_drain() -> None:
    copy = FleetCopy()
    put(copy, keys.instance_key("m", "a"), GOOD)
    put(copy, keys.operator_key("m", "a"), b"{not json")
    assert copy.instances("m")[0].operator.draining
    delete(copy, keys.operator_key("m", "a"))
    assert not copy.instances("m")[0].operator.draining


def test_config_keys_mark_the_config_and_are_not_fleet() -> None:
    copy = FleetCopy()
    copy.config_dirty = False
    assert put(copy, "/mcp/models/m", b"{}") is None
    assert copy.config_dirty


def test_the_copy_is_bounded() -> None:
    copy = FleetCopy()
    with mock.patch("mcpctl.limits.FLEET_PICKER_INSTANCES_MAX", 2):
        for name in ("a", "b", "c"):
            put(copy, keys.instance_key("m", name), GOOD)
        assert [i.id for i in copy.instances("m")] == ["a", "b"]
        assert copy.invalid[keys.instance_key("m", "c")] == "over FLEET_PICKER_INSTANCES_MAX"
        put(copy, keys.instance_key("m", "a"), GOOD, 3)  # an update of a known one is kept
        assert copy.instances("m")[0].mod_revision == 3


def test_a_models_list_is_rebuilt_only_when_it_changes() -> None:
    copy = FleetCopy()
    put(copy, keys.instance_key("m", "a"), GOOD)
    put(copy, keys.instance_key("other", "x"), GOOD)
    first = copy.pools.get("m") or (copy.instances("m") and copy.pools["m"])
    put(copy, keys.instance_key("other", "y"), GOOD)
    assert copy.pools["m"] is first  # another model's change: not rebuilt
    put(copy, keys.instance_key("m", "b"), GOOD)
    assert "m" not in copy.pools
