"""Fixtures of the etcd API tests: one mcp-config cluster per module, Debian's etcdctl."""

from __future__ import annotations

import os
import shutil
import subprocess
from collections.abc import Iterator

import pytest

from tests.cluster import Cluster, running_cluster

ETCDCTL = "/usr/bin/etcdctl"
CTL_TIMEOUT_S = 60.0


def need(binary: str) -> None:
    if not os.access(binary, os.X_OK):
        if os.environ.get("CI"):
            pytest.fail(f"{binary} is missing (make etcd installs etcd-server and etcd-client)")
        pytest.skip(f"{binary} is missing: `sudo make etcd` installs Debian's etcd packages")


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    with running_cluster(tmp_path_factory.mktemp("etcd-api")) as c:
        yield c


def ctl_env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("ETCDCTL_", "MCP"))}
    env["ETCDCTL_API"] = "3"
    return env


def etcdctl(
    endpoints: list[str], *args: str, stdin: str | None = None, check: bool = True
) -> subprocess.CompletedProcess[str]:
    need(ETCDCTL)
    proc = subprocess.run(
        [shutil.which(ETCDCTL) or ETCDCTL, "--endpoints", ",".join(endpoints), *args],
        capture_output=True,
        text=True,
        input=stdin,
        env=ctl_env(),
        timeout=CTL_TIMEOUT_S,
    )
    if check:
        assert proc.returncode == 0, f"etcdctl {' '.join(args)}: {proc.stdout}\n{proc.stderr}"
    return proc
