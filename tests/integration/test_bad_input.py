"""Bad input against a real 3-node cluster, through the SDK and the real CLI: each is
refused with the documented status / exit code and one clear line, and every node
keeps serving afterwards (a node never crashes on client input)."""

from __future__ import annotations

import base64
import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import grpc
import pytest

from mcpctl import errors
from mcpctl.cli.exitcodes import Exit
from mcpctl.client import Client
from tests.cluster import Cluster, free_ports, running_cluster

pytestmark = pytest.mark.cluster

MIB = 1024 * 1024
CLI_TIMEOUT_S = 60.0


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    """One 3-node cluster shared by this module (each test uses its own keys)."""
    with running_cluster(tmp_path_factory.mktemp("bad-input")) as c:
        yield c


@pytest.fixture
def client(cluster: Cluster) -> Iterator[Client]:
    with cluster.client() as c:
        yield c


def assert_healthy(cluster: Cluster) -> None:
    """Every node is still running and serves a linearizable read."""
    for node in cluster.nodes:
        assert node.running, f"{node.name} died:\n{node.log_text()[-3000:]}"
    cluster.wait_ready()


def cli(cluster: Cluster, *args: str | bytes) -> subprocess.CompletedProcess[bytes]:
    """`python -m mcpctl --endpoints ... ARGS` with no MCPCTL_* from the outer environment."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("MCPCTL_", "MCP_"))}
    return subprocess.run(
        [sys.executable, "-m", "mcpctl", "--endpoints", ",".join(cluster.endpoints), *args],
        capture_output=True,
        timeout=CLI_TIMEOUT_S,
        env=env,
        stdin=subprocess.DEVNULL,
    )


def cli_fails(cluster: Cluster, code: Exit, *args: str | bytes) -> str:
    """Run the CLI, expect exit ``code``, nothing on stdout and one stderr line; return it."""
    proc = cli(cluster, *args)
    stderr = proc.stderr.decode("utf-8", "replace")
    assert proc.returncode == int(code), f"exit {proc.returncode}, stderr: {stderr!r}"
    assert proc.stdout == b""
    lines = stderr.splitlines()
    assert len(lines) == 1, f"expected one line on stderr, got {stderr!r}"
    assert "Traceback" not in stderr
    assert_healthy(cluster)
    return lines[0]


def cli_ok(cluster: Cluster, *args: str | bytes) -> str:
    proc = cli(cluster, *args)
    assert proc.returncode == 0, proc.stderr.decode("utf-8", "replace")
    return proc.stdout.decode("utf-8", "replace")


# -- keys --------------------------------------------------------------------------------


def test_empty_key_sdk(cluster: Cluster, client: Client) -> None:
    """An empty key is INVALID_ARGUMENT for put, get (without --prefix) and delete."""
    with pytest.raises(errors.InvalidArgument, match=r"^put\.key: must not be empty$"):
        client.put("", "v")
    with pytest.raises(errors.InvalidArgument, match=r"^range\.key: must not be empty$"):
        client.get("")
    with pytest.raises(errors.InvalidArgument, match=r"^delete\.key: must not be empty$"):
        client.delete("")
    assert_healthy(cluster)


def test_empty_key_cli(cluster: Cluster) -> None:
    """`mcpctl put '' v` / `get ''`: exit 1, one line naming the field."""
    line = cli_fails(cluster, Exit.FAILED, "put", "", "v")
    assert line == "mcpctl: invalid argument: put.key: must not be empty"
    line = cli_fails(cluster, Exit.FAILED, "get", "")
    assert line == "mcpctl: invalid argument: range.key: must not be empty"


def test_key_over_1_kib(cluster: Cluster, client: Client) -> None:
    """A key of 1024 bytes is fine; 1025 bytes is INVALID_ARGUMENT, via SDK and CLI."""
    client.put("/k/" + "x" * 1021, "ok")
    long_key = "/k/" + "x" * 1022
    with pytest.raises(errors.InvalidArgument, match="1025 bytes is over the limit of 1024"):
        client.put(long_key, "v")
    with pytest.raises(errors.InvalidArgument, match="1025 bytes"):
        client.get(long_key)
    line = cli_fails(cluster, Exit.FAILED, "put", long_key, "v")
    assert line.startswith("mcpctl: invalid argument: put.key: 1025 bytes")


def test_non_utf8_key_sdk(cluster: Cluster, client: Client) -> None:
    """A key that is not UTF-8 (bytes through the SDK) is INVALID_ARGUMENT everywhere."""
    key = b"/bin/\xff\xfe"
    with pytest.raises(errors.InvalidArgument, match=r"^put\.key: not valid UTF-8$"):
        client.put(key, "v")
    with pytest.raises(errors.InvalidArgument, match="not valid UTF-8"):
        client.get(key)
    with pytest.raises(errors.InvalidArgument, match="not valid UTF-8"):
        client.delete(key, prefix=True)
    assert_healthy(cluster)


def test_non_utf8_key_cli(cluster: Cluster) -> None:
    """A non-UTF-8 key in argv reaches the node and is refused in one line (no traceback)."""
    line = cli_fails(cluster, Exit.FAILED, "put", b"/bin/\xff", "v")
    assert line == "mcpctl: invalid argument: put.key: not valid UTF-8"
    line = cli_fails(cluster, Exit.FAILED, "get", b"/bin/\xff")
    assert line == "mcpctl: invalid argument: range.key: not valid UTF-8"


def test_non_utf8_value_cli_round_trips(cluster: Cluster) -> None:
    """A non-UTF-8 value given in argv is stored as those bytes and shown as base64."""
    cli_ok(cluster, "put", "/bin/value", b"\xff\xfeok")
    out = json.loads(cli_ok(cluster, "-w", "json", "get", "/bin/value"))
    item = out["kvs"][0]
    assert item["value_encoding"] == "base64"
    assert base64.b64decode(item["value"]) == b"\xff\xfeok"


def test_key_with_nul(cluster: Cluster, client: Client) -> None:
    """A key containing NUL is INVALID_ARGUMENT (argv cannot carry NUL, so SDK only)."""
    with pytest.raises(errors.InvalidArgument, match=r"^put\.key: must not contain NUL$"):
        client.put("/nul/a\x00b", "v")
    with pytest.raises(errors.InvalidArgument, match="NUL"):
        client.get(b"/nul/\x00", prefix=True)
    assert client.get("/nul/", prefix=True).count == 0
    assert_healthy(cluster)


# -- values ------------------------------------------------------------------------------


def test_value_over_1_mib_sdk(cluster: Cluster, client: Client) -> None:
    """1 MiB is accepted; 1 MiB + 1 is RESOURCE_EXHAUSTED naming the limit; far over too."""
    client.put("/big/max", b"x" * MIB)
    with pytest.raises(errors.ResourceExhausted, match="1048577 bytes is over the limit of"):
        client.put("/big/over", b"x" * (MIB + 1))
    # Beyond the gRPC receive limit the transport itself says RESOURCE_EXHAUSTED.
    with pytest.raises(errors.ResourceExhausted):
        client.put("/big/way-over", b"x" * (3 * MIB))
    assert client.get("/big/", prefix=True, keys_only=True).count == 1
    assert_healthy(cluster)


def test_value_over_1_mib_cli(cluster: Cluster, tmp_path: Path) -> None:
    """`mcpctl put KEY -f FILE` with a file over the limit: exit 1, one line, nothing written."""
    big = tmp_path / "big.bin"
    big.write_bytes(b"y" * (MIB + 1))
    line = cli_fails(cluster, Exit.FAILED, "put", "/bigcli/over", "-f", str(big))
    assert line.startswith("mcpctl: resource exhausted: put.value: 1048577 bytes")
    big.write_bytes(b"y" * (3 * MIB))
    line = cli_fails(cluster, Exit.FAILED, "put", "/bigcli/over", "-f", str(big))
    assert line.startswith("mcpctl: resource exhausted:")
    assert cli_ok(cluster, "get", "/bigcli/", "--prefix", "--count-only") == "0\n"


# -- revisions ---------------------------------------------------------------------------


def test_negative_revision(cluster: Cluster, client: Client) -> None:
    """A negative revision is INVALID_ARGUMENT (SDK) and a usage error (CLI, exit 2)."""
    with pytest.raises(errors.InvalidArgument, match=r"^range\.revision: must not be negative$"):
        client.get("/rev", revision=-1)
    line = cli_fails(cluster, Exit.USAGE, "get", "/rev", "--rev", "-1")
    assert "--rev" in line


def test_future_revision(cluster: Cluster, client: Client) -> None:
    """A revision beyond the store's is INVALID_ARGUMENT naming both revisions."""
    current = client.put("/future", "v").revision
    future = current + 1000
    with pytest.raises(errors.InvalidArgument, match=f"revision {future} is in the future"):
        client.get("/future", revision=future)
    line = cli_fails(cluster, Exit.FAILED, "get", "/future", "--rev", str(future))
    assert line.startswith(f"mcpctl: invalid argument: revision {future} is in the future")


def test_compacted_revision(cluster: Cluster, client: Client) -> None:
    """After compact(N), reading below N is FAILED_PRECONDITION carrying N; N still reads."""
    revisions = [client.put("/cmp/a", str(i)).revision for i in range(5)]
    keep = revisions[3]
    client.compact(keep)
    with pytest.raises(errors.Compacted) as info:
        client.get("/cmp/a", revision=revisions[1])
    assert info.value.code == "FAILED_PRECONDITION"
    assert info.value.compact_revision == keep
    at_keep = client.get("/cmp/a", revision=keep).first
    assert at_keep is not None and at_keep.text == "3"
    # Compacting to an older revision than the current compact point is refused the same way.
    with pytest.raises(errors.Compacted) as again:
        client.compact(revisions[0])
    assert again.value.compact_revision == keep

    line = cli_fails(cluster, Exit.FAILED, "get", "/cmp/a", "--rev", str(revisions[1]))
    assert line.startswith("mcpctl: compacted: ")
    assert f"oldest available is {keep}" in line


# -- compare-and-swap ------------------------------------------------------------------------


def test_cas_mismatch_sdk(cluster: Cluster, client: Client) -> None:
    """put with a wrong expected mod_revision is CompareFailed and leaves the value alone."""
    rev = client.put("/cas/a", "1").revision
    with pytest.raises(errors.CompareFailed):
        client.put("/cas/a", "2", expected_mod_revision=rev + 100)
    with pytest.raises(errors.CompareFailed):
        client.put("/cas/a", "2", expected_mod_revision=0)  # 0 = must not exist
    got = client.get("/cas/a").first
    assert got is not None and got.text == "1" and got.mod_revision == rev
    assert client.put("/cas/a", "3", expected_mod_revision=rev).revision > rev
    assert_healthy(cluster)


def test_cas_mismatch_cli(cluster: Cluster, client: Client) -> None:
    """`put --if-mod-rev N` with a stale N: exit 1, one 'compare failed' line; right N: 0."""
    rev = client.put("/cas/cli", "1").revision
    line = cli_fails(cluster, Exit.FAILED, "put", "/cas/cli", "2", "--if-mod-rev", str(rev + 7))
    assert line.startswith("mcpctl: compare failed: ")
    assert str(rev + 7) in line
    assert cli_ok(cluster, "put", "/cas/cli", "2", "--if-mod-rev", str(rev)) == "OK\n"
    got = client.get("/cas/cli").first
    assert got is not None and got.text == "2"


# -- CLI usage ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "args",
    [
        ("put", "/u", "v", "--bogus"),
        ("--frob", "get", "/u"),
        ("get", "/u", "--rev", "soon"),
        ("put", "/u", "v", "--if-mod-rev", "-1"),
        ("nosuchcommand",),
    ],
)
def test_usage_error_cli(cluster: Cluster, args: tuple[str, ...]) -> None:
    """Unknown flags, bad flag values and unknown commands: exit 2, one line."""
    line = cli_fails(cluster, Exit.USAGE, *args)
    assert line.startswith("mcpctl")


def test_unreachable_endpoints_cli() -> None:
    """No endpoint reachable: exit 3 (nothing applied) with one line."""
    (port,) = free_ports(1)
    env = {k: v for k, v in os.environ.items() if not k.startswith(("MCPCTL_", "MCP_"))}
    proc = subprocess.run(
        [
            sys.executable,
            *("-m", "mcpctl", "--endpoints", f"127.0.0.1:{port}", "--timeout", "1"),
            *("get", "/x"),
        ],
        capture_output=True,
        text=True,
        timeout=CLI_TIMEOUT_S,
        env=env,
    )
    assert proc.returncode == int(Exit.UNAVAILABLE), proc.stderr
    assert len(proc.stderr.splitlines()) == 1 and "Traceback" not in proc.stderr


# -- garbage on the wire -------------------------------------------------------------------------


@pytest.mark.parametrize("method", ["Put", "Range", "DeleteRange", "Txn", "Compact"])
def test_garbage_request_body(cluster: Cluster, method: str) -> None:
    """Raw bytes that are not a protobuf message: INVALID_ARGUMENT, and the node keeps running."""
    node = cluster.nodes[0]
    payloads = [b"\xff\xff\xff\xff", b"\x0a\xff", b"\x08", bytes(range(256)) * 4]
    with grpc.insecure_channel(node.endpoint) as channel:
        # No (de)serializers: the payload goes on the wire as is.
        call = channel.unary_unary(
            f"/mcp.v1.KV/{method}", request_serializer=None, response_deserializer=None
        )
        for payload in payloads:
            with pytest.raises(grpc.RpcError) as info:
                call(payload, timeout=10)
            err = info.value
            assert isinstance(err, grpc.Call)
            assert err.code() == grpc.StatusCode.INVALID_ARGUMENT, err.details()
            assert "does not decode" in (err.details() or "")
    assert_healthy(cluster)
    with cluster.client(node) as c:
        assert c.put("/after-garbage", method).revision > 0
