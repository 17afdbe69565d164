"""The `mcpctl lease ...` commands and `put --lease` (docs/cli.md), without a cluster:
a fake Client stands in for the SDK, so every byte printed and every exit code is checked."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from typing import Any

import pytest

import mcpctl.client
from mcpctl import errors
from mcpctl.cli.exitcodes import Exit
from mcpctl.cli.leaseid import lease_hex, parse_lease_id
from mcpctl.client import GetResult, KeyValue, LeaseKeepAlive, LeaseList, TimeToLive
from tests.unit.test_cli_output import HEADER, HEADER_JSON, FakeClient, one_line, run_cli

LEASE_ID = 0x694D77AA9E38260F
HEX = "694d77aa9e38260f"


class FakeLease:
    def __init__(self, lease_id: int, ttl: int) -> None:
        self.id, self.ttl, self.header = lease_id, ttl, HEADER
        self.lost_reason: str | None = None
        self.lost = threading.Event()


class LeaseFakeClient(FakeClient):
    """FakeClient plus the lease calls; keep_alive renews twice, then the lease is lost."""

    def grant(self, ttl: int, **kw: Any) -> FakeLease:
        self._record("grant", ttl, **kw)
        return FakeLease(LEASE_ID, max(ttl, 2))

    def revoke(self, lease_id: int, **kw: Any) -> Any:
        self._record("revoke", lease_id, **kw)
        return HEADER

    def keep_alive_once(self, lease_id: int, **kw: Any) -> LeaseKeepAlive:
        self._record("keep_alive_once", lease_id, **kw)
        return LeaseKeepAlive(HEADER, lease_id, 10)

    def keep_alive(self, lease_id: int, *, on_renewed: Any, on_lost: Any, **kw: Any) -> FakeLease:
        self._record("keep_alive", lease_id, **kw)
        lease = FakeLease(lease_id, 10)
        on_renewed(lease, 10)
        on_renewed(lease, 10)
        lease.lost_reason = "lease not found: revoked or expired"
        lease.lost.set()
        on_lost(lease)
        return lease

    def time_to_live(self, lease_id: int, **kw: Any) -> TimeToLive:
        self._record("time_to_live", lease_id, **kw)
        keys = ["/svc/a", "/svc/b"] if kw.get("keys") else []
        return TimeToLive(HEADER, lease_id, 7, 10, keys)

    def leases(self, **kw: Any) -> LeaseList:
        self._record("leases", **kw)
        return LeaseList(HEADER, [LEASE_ID, 1])


@pytest.fixture
def fake(monkeypatch: pytest.MonkeyPatch) -> Iterator[type[LeaseFakeClient]]:
    monkeypatch.setattr(mcpctl.client, "Client", LeaseFakeClient)
    monkeypatch.delenv("MCPCTL_ENDPOINTS", raising=False)
    monkeypatch.delenv("MCPCTL_TIMEOUT", raising=False)
    FakeClient.built, FakeClient.calls, FakeClient.fail_with = [], [], None
    yield LeaseFakeClient
    FakeClient.fail_with = None


Cap = pytest.CaptureFixture[str]


# -- ids ---------------------------------------------------------------------------------
@pytest.mark.parametrize("lease_id", [1, 0xABC, LEASE_ID, 2**63 - 1])
def test_lease_ids_round_trip_through_hex(lease_id: int) -> None:
    assert len(lease_hex(lease_id)) == 16
    assert parse_lease_id(lease_hex(lease_id)) == lease_id
    assert parse_lease_id("0x" + lease_hex(lease_id).upper()) == lease_id


@pytest.mark.parametrize("text", ["", "xyz", "0", "-1", "8000000000000000", "1" * 17, "0x"])
def test_bad_lease_ids_are_refused(text: str) -> None:
    with pytest.raises(ValueError, match="bad lease id"):
        parse_lease_id(text)


# -- output --------------------------------------------------------------------------------
def test_grant_prints_the_hex_id_like_etcdctl(fake: type[LeaseFakeClient], capsys: Cap) -> None:
    """Granted without keepalives (the CLI exits; keep-alive or a service renews it)."""
    assert run_cli(capsys, "lease", "grant", "10") == (
        0,
        f"lease {HEX} granted with TTL(10s)\n",
        "",
    )
    assert fake.calls[0][0] == "grant" and fake.calls[0][2]["keep_alive"] is False
    code, out, _ = run_cli(capsys, "-w", "json", "lease", "grant", "10")
    assert code == 0 and json.loads(out) == {"header": HEADER_JSON, "id": HEX, "ttl": 10}


def test_revoke_keepalive_once_timetolive_and_list(
    fake: type[LeaseFakeClient], capsys: Cap
) -> None:
    assert run_cli(capsys, "lease", "revoke", HEX)[1] == f"lease {HEX} revoked\n"
    assert fake.calls[-1][1] == (LEASE_ID,)
    out = run_cli(capsys, "lease", "keep-alive", HEX, "--once")[1]
    assert out == f"lease {HEX} keepalived with TTL(10)\n"
    out = run_cli(capsys, "lease", "timetolive", HEX)[1]
    assert out == f"lease {HEX} granted with TTL(10s), remaining(7s)\n"
    out = run_cli(capsys, "lease", "timetolive", HEX, "--keys")[1]
    assert out.endswith(", remaining(7s), attached keys([/svc/a /svc/b])\n")
    out = run_cli(capsys, "lease", "list")[1]
    assert out == f"found 2 leases\n{HEX}\n0000000000000001\n"


def test_lease_json_shapes(fake: type[LeaseFakeClient], capsys: Cap) -> None:
    """The documented -w json shapes (docs/cli.md): ids as hex strings."""

    def js(*argv: str) -> Any:
        code, out, err = run_cli(capsys, "-w", "json", "lease", *argv)
        assert (code, err) == (0, "")
        return json.loads(out)

    assert js("revoke", HEX) == {"header": HEADER_JSON, "id": HEX}
    assert js("keep-alive", HEX, "--once") == {"id": HEX, "ttl": 10}
    assert js("timetolive", HEX) == {"header": HEADER_JSON, "id": HEX, "ttl": 7, "granted_ttl": 10}
    assert js("timetolive", HEX, "--keys")["keys"] == ["/svc/a", "/svc/b"]
    assert js("list") == {"header": HEADER_JSON, "leases": [{"id": HEX}, {"id": "0" * 15 + "1"}]}


def test_keep_alive_prints_each_renewal_and_exits_1_when_the_lease_is_lost(
    fake: type[LeaseFakeClient], capsys: Cap
) -> None:
    code, out, err = run_cli(capsys, "lease", "keep-alive", HEX)
    assert code == int(Exit.FAILED)
    assert out == f"lease {HEX} keepalived with TTL(10)\n" * 2
    assert one_line(err) == (
        f"mcpctl lease keep-alive: lease {HEX} lost: lease not found: revoked or expired"
    )


def test_put_lease_and_get_json_show_the_lease(
    fake: type[LeaseFakeClient], capsys: Cap, monkeypatch: pytest.MonkeyPatch
) -> None:
    """put --lease HEX attaches the key; get -w json shows "lease" (hex) only when set."""
    assert run_cli(capsys, "put", "/svc/a", "up", "--lease", HEX)[:2] == (0, "OK\n")
    assert fake.calls[0][2]["lease"] == LEASE_ID
    run_cli(capsys, "put", "/svc/b", "up")
    assert fake.calls[1][2]["lease"] == 0
    kvs = [KeyValue("/svc/a", b"up", 2, 5, 1, LEASE_ID), KeyValue("/x", b"1", 3, 3, 1)]
    monkeypatch.setattr(FakeClient, "get_result", GetResult(HEADER, kvs, 2, False))
    got = json.loads(run_cli(capsys, "-w", "json", "get", "/", "--prefix")[1])
    assert got["kvs"][0]["lease"] == HEX
    assert "lease" not in got["kvs"][1]


# -- bad input ------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "argv",
    [
        ["lease", "grant", "0"],
        ["lease", "grant", "-5"],
        ["lease", "grant", "ten"],
        ["lease", "revoke", "xyz"],
        ["lease", "timetolive", "0"],
        ["lease", "keep-alive", "-1", "--once"],
        ["lease", "revoke"],
        ["lease"],
        ["put", "/a", "1", "--lease", "nothex"],
    ],
)
def test_bad_input_is_one_line_and_exit_2(
    fake: type[LeaseFakeClient], capsys: Cap, argv: list[str]
) -> None:
    code, out, err = run_cli(capsys, *argv)
    assert (code, out) == (int(Exit.USAGE), "")
    assert one_line(err).startswith("mcpctl")
    assert fake.calls == []


def test_an_unknown_lease_is_lease_not_found_exit_1(
    fake: type[LeaseFakeClient], capsys: Cap
) -> None:
    FakeClient.fail_with = errors.LeaseNotFound()
    code, out, err = run_cli(capsys, "lease", "revoke", HEX)
    assert (code, out) == (int(Exit.FAILED), "")
    assert one_line(err) == "mcpctl: lease not found: lease not found"
