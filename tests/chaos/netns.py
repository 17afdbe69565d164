"""Network namespaces for real partitions (shared/TESTBED.md).

Shape: one namespace per node, one for the harness (the worker: every client
call), and the bridge in a namespace of its own, so the root namespace gets no
link, address or rule. Addresses come from a private /24 that exists only
inside these namespaces; none of them has a default route, so a stray address
fails at once ("Network is unreachable"). The root namespace never dials
them.

A cut is an nft table inside one node's namespace that drops (silently)
everything from and to the given peer addresses; healing deletes the table.
Names are unique per run (``mch<pid>x<n>``) and ``close`` deletes every
namespace even after a failure; namespaces left by a run whose process is
gone are removed by ``remove_stale``.
"""

from __future__ import annotations

import contextlib
import itertools
import os
import re
import shutil
import subprocess
from collections.abc import Sequence
from dataclasses import dataclass

SUBNET = "10.213.7"  # /24, only inside this run's namespaces
HARNESS_HOST = 2
NODE_HOST_BASE = 11
TABLE = "chaos"
COMMAND_TIMEOUT_S = 20.0
_counter = itertools.count(1)
_NAME = re.compile(r"^mch(\d+)x\d+-")


def unavailable_reason() -> str | None:
    """Why namespaces cannot be used here (None when they can)."""
    if os.geteuid() != 0:
        return "network namespaces need root"
    for tool, package in (("ip", "iproute2"), ("nft", "nftables")):
        if shutil.which(tool) is None:
            return f"`{tool}` is missing (apt-get install {package})"
    probe = f"mch{os.getpid()}probe"
    try:
        _run(["ip", "netns", "add", probe])
    except RuntimeError as e:
        return f"cannot create a network namespace: {e}"
    _run(["ip", "netns", "del", probe], check=False)
    return None


def _run(args: Sequence[str], *, check: bool = True, stdin: str | None = None) -> str:
    proc = subprocess.run(
        list(args),
        input=stdin,
        capture_output=True,
        text=True,
        timeout=COMMAND_TIMEOUT_S,
        check=False,
    )
    if check and proc.returncode != 0:
        raise RuntimeError(f"{' '.join(args)}: {proc.stderr.strip() or proc.returncode}")
    return proc.stdout


def remove_stale() -> None:
    """Delete namespaces of earlier runs whose process no longer exists."""
    for line in _run(["ip", "netns", "list"], check=False).splitlines():
        name = line.split()[0] if line.split() else ""
        m = _NAME.match(name)
        if m and not os.path.exists(f"/proc/{m.group(1)}"):
            _kill_inside(name)
            _run(["ip", "netns", "del", name], check=False)


def _kill_inside(ns: str) -> None:
    """kill -9 what a run started in its own namespace (nodes, the worker)."""
    for pid in _run(["ip", "netns", "pids", ns], check=False).split():
        with contextlib.suppress(ProcessLookupError, ValueError):
            os.kill(int(pid), 9)


@dataclass(frozen=True, slots=True)
class Host:
    name: str  # short: n1, n2, h
    netns: str
    address: str


class Network:
    """The namespaces, bridge and cuts of one run."""

    def __init__(self) -> None:
        self.prefix = f"mch{os.getpid()}x{next(_counter)}"
        self.bridge_ns = f"{self.prefix}-br"
        self.hosts: dict[str, Host] = {}
        self._created: list[str] = []
        self._cut: set[str] = set()

    def __enter__(self) -> Network:
        self.setup()
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def setup(self) -> None:
        self._add_ns(self.bridge_ns)
        _run(["ip", "-n", self.bridge_ns, "link", "add", "br0", "type", "bridge"])
        _run(["ip", "-n", self.bridge_ns, "link", "set", "dev", "br0", "up"])
        self.add_host("h", HARNESS_HOST)

    def _add_ns(self, name: str) -> None:
        _run(["ip", "netns", "add", name])
        self._created.append(name)
        _run(["ip", "-n", name, "link", "set", "dev", "lo", "up"])

    def add_host(self, name: str, host_number: int) -> Host:
        """A namespace with one veth to the bridge and address SUBNET.host_number/24."""
        assert name not in self.hosts, name
        assert 1 <= host_number <= 254
        ns = f"{self.prefix}-{name}"
        address = f"{SUBNET}.{host_number}"
        port = f"v{name}"
        self._add_ns(ns)
        _run(
            [
                "ip",
                "-n",
                ns,
                "link",
                "add",
                "eth0",
                "type",
                "veth",
                "peer",
                "name",
                port,
                "netns",
                self.bridge_ns,
            ]
        )
        _run(["ip", "-n", ns, "addr", "add", f"{address}/24", "dev", "eth0"])
        _run(["ip", "-n", ns, "link", "set", "dev", "eth0", "up"])
        _run(["ip", "-n", self.bridge_ns, "link", "set", "dev", port, "master", "br0"])
        _run(["ip", "-n", self.bridge_ns, "link", "set", "dev", port, "up"])
        host = Host(name, ns, address)
        self.hosts[name] = host
        return host

    def node_host(self, name: str, index: int) -> Host:
        return self.add_host(name, NODE_HOST_BASE + index)

    @property
    def harness(self) -> Host:
        return self.hosts["h"]

    def exec_prefix(self, host: Host) -> list[str]:
        return ["ip", "netns", "exec", host.netns]

    # -- cuts -----------------------------------------------------------------
    def cut(self, host: Host, peers: Sequence[Host]) -> None:
        """Drop everything between ``host`` and ``peers`` (both directions), silently."""
        assert host.name not in self._cut, f"{host.name} is already cut"
        addresses = ", ".join(p.address for p in peers)
        rules = (
            f"table inet {TABLE} {{\n"
            f"  chain input {{ type filter hook input priority 0; policy accept; "
            f"ip saddr {{ {addresses} }} drop; }}\n"
            f"  chain output {{ type filter hook output priority 0; policy accept; "
            f"ip daddr {{ {addresses} }} drop; }}\n"
            f"}}\n"
        )
        _run([*self.exec_prefix(host), "nft", "-f", "-"], stdin=rules)
        self._cut.add(host.name)

    def heal(self, host: Host) -> None:
        if host.name in self._cut:
            _run([*self.exec_prefix(host), "nft", "delete", "table", "inet", TABLE])
            self._cut.discard(host.name)

    # -- teardown -------------------------------------------------------------------
    def close(self) -> None:
        """Delete every namespace of this run (processes in them must be gone)."""
        for ns in reversed(self._created):
            _kill_inside(ns)
            _run(["ip", "netns", "del", ns], check=False)
        self._created.clear()
        self.hosts.clear()
        self._cut.clear()


__all__ = ["Host", "Network", "remove_stale", "unavailable_reason"]
