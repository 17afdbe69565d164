"""The console's DNS-rebinding guard (auth off): only ``localhost`` and literal
loopback addresses are loopback hosts. A name that merely starts like one
(``127.0.0.1.nip.io``) is the attacker's: they can rebind it to 127.0.0.1."""

from __future__ import annotations

import pytest

from mcpctl.server.security import is_loopback, is_loopback_host

LOOPBACK = [
    "127.0.0.1",
    "127.0.0.1:7401",
    "127.1.2.3:80",
    "localhost",
    "LocalHost:7401",
    "[::1]",
    "[::1]:7401",
]
NOT_LOOPBACK = [
    # names an attacker owns (issue #19)
    "127.0.0.1.evil.example:7401",
    "127.attacker.com",
    "127.0.0.1.nip.io",
    "127.0.0.1.nip.io:7401",
    "localhost.evil.example",
    "[::1].evil.example",
    # not a loopback address, or not one host[:port]
    "evil.example",
    "0.0.0.0:7401",
    "[::]:7401",
    "10.0.0.1",
    "127.0.0.1:7401:7401",
    "127.0.0.1:port",
    "[::1]7401",
    "[::1",
    "::1",
    "127.0.0.1 ",
    "",
]


@pytest.mark.parametrize("host", LOOPBACK)
def test_loopback_hosts_are_accepted(host: str) -> None:
    assert is_loopback_host(host)


@pytest.mark.parametrize("host", NOT_LOOPBACK)
def test_names_that_only_look_like_loopback_are_refused(host: str) -> None:
    assert not is_loopback_host(host)


def test_a_listen_address_on_a_lookalike_name_is_not_loopback() -> None:
    """The start-up warning (auth or TLS off beyond loopback) uses the same rule."""
    assert is_loopback("127.0.0.1:7101") and is_loopback("[::1]:7101")
    assert not is_loopback("127.attacker.com:7101")
