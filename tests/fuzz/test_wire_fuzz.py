"""Junk on the wire: raw sockets to the gRPC port and to the Raft port of a real cluster.

gRPC port: an HTTP/2 preface then random bytes, random bytes alone, a valid
gRPC request (built frame by frame here, and shown to work by a control
test) cut short at many points, gRPC messages whose length prefix lies, and
many connections opened and closed. Raft port (PySyncObj, every message
sealed with AES-GCM keyed from the secret): random bytes, frames sealed with
the wrong secret or Fernet (whole, cut short, garbled), a long stream of
junk behind a length that promises more, and many connections opened and
closed.

Afterwards every node runs under its original pid, the cluster commits a
write that every node then reads, no cut-short request was applied, memory
is back within a bound and the open sockets are back to where they were.
Every loop is bounded in count and every socket operation has a timeout;
randomness is seeded, so a failure reproduces.

Three PySyncObj behaviours break these promises today; the tests that pin
them are marked xfail(strict=True) until mcpctl works around them (see
their reasons): an incoming Raft connection that never completes the
handshake is never closed; before the handshake a peer can make a node
buffer any amount of junk (a frame length of up to 2 GiB); and when
accept() fails (EMFILE) the Raft listener unbinds for good.
"""

from __future__ import annotations

import contextlib
import os
import random
import resource
import socket
import struct
import time
import zlib
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from cryptography.fernet import Fernet

from mcpctl._proto.mcp.v1 import kv_pb2
from mcpctl.raft.cipher import PeerCipher
from tests.cluster import Cluster, NodeProc, running_cluster, wait_for
from tests.fuzz.support import Baseline, assert_survived, rss_mib, take_baseline

pytestmark = [pytest.mark.cluster, pytest.mark.slow]

SEED = 20261124
SOCKET_TIMEOUT_S = 2.0
# Memory after every connection closed: nothing we send may be kept. What
# remains is allocator slack from buffering up to JUNK_STREAM_BYTES and gRPC's
# per-connection state (~a few MiB, measured); 64 MiB leaves room for both
# and still catches one junk stream's buffer that was never freed (x3 nodes
# would be far over).
RSS_GROWTH_MIB_MAX = 64.0
# A leaked socket per connection would show as hundreds of extra fds.
FDS_GROWTH_MAX = 16
JUNK_STREAM_BYTES = 16 * 1024 * 1024
JUNK_STREAM_S_MAX = 15.0
GRPC_CONNECTIONS = 300
# PySyncObj listens with a backlog of 5 and accepts only a few connections per
# second (measured: ~7/s), so a connect past the backlog waits for a SYN
# retransmit (1 s): Raft connection counts stay small to keep the module fast.
RAFT_CONNECTIONS = 36
RAFT_CONNECT_TIMEOUT_S = 5.0
# Free fds left to the node in the fd-exhaustion test.
FLOOD_FDS = 3  # small: idle handshakes are closed after the connection timeout
# PySyncObj's connection timeout as mcpctl sets it (replication.py: max(3.5, election max)).
RAFT_CONNECTION_TIMEOUT_S = 3.5

# -- HTTP/2 and gRPC framing, just enough to build one request ---------------------------------

PREFACE = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"
DATA, HEADERS, SETTINGS = 0x0, 0x1, 0x4
END_STREAM, END_HEADERS = 0x1, 0x4


def h2_frame(kind: int, flags: int, stream_id: int, payload: bytes) -> bytes:
    return (
        len(payload).to_bytes(3, "big")
        + bytes([kind, flags])
        + stream_id.to_bytes(4, "big")
        + payload
    )


def hpack_int(value: int, prefix_bits: int) -> bytes:
    """RFC 7541 §5.1 integer with an N-bit prefix (the prefix's flag bits are 0)."""
    limit = (1 << prefix_bits) - 1
    if value < limit:
        return bytes([value])
    out = bytearray([limit])
    value -= limit
    while value >= 128:
        out.append((value & 0x7F) | 0x80)
        value >>= 7
    out.append(value)
    return bytes(out)


def hpack_literal(name: str, value: str) -> bytes:
    """A literal header field without indexing, new name, no Huffman coding."""
    n, v = name.encode(), value.encode()
    return b"\x00" + hpack_int(len(n), 7) + n + hpack_int(len(v), 7) + v


def grpc_request(
    authority: str,
    path: str,
    message: bytes,
    *,
    length: int | None = None,
    compressed: bool = False,
    end_stream: bool = True,
) -> bytes:
    """Preface, SETTINGS, HEADERS and one DATA frame carrying a length-prefixed message."""
    headers = b"".join(
        hpack_literal(k, v)
        for k, v in (
            (":method", "POST"),
            (":scheme", "http"),
            (":path", path),
            (":authority", authority),
            ("content-type", "application/grpc"),
            ("te", "trailers"),
        )
    )
    prefix = bytes([1 if compressed else 0]) + struct.pack(
        ">I", len(message) if length is None else length
    )
    return (
        PREFACE
        + h2_frame(SETTINGS, 0, 0, b"")
        + h2_frame(HEADERS, END_HEADERS, 1, headers)
        + h2_frame(DATA, END_STREAM if end_stream else 0, 1, prefix + message)
    )


@dataclass(frozen=True)
class Framing:
    """How the gRPC length prefix and the DATA frame of a request are built."""

    length: int | None = None  # None: the true length
    compressed: bool = False
    end_stream: bool = True


def put_request(node: NodeProc, key: str, framing: Framing = Framing()) -> bytes:
    message = kv_pb2.PutRequest(key=key.encode(), value=b"wire").SerializeToString()
    return grpc_request(
        node.endpoint,
        "/mcp.v1.KV/Put",
        message,
        length=framing.length,
        compressed=framing.compressed,
        end_stream=framing.end_stream,
    )


# -- sockets ---------------------------------------------------------------------------------


def send_and_close(port: int, data: bytes, *, read_s: float = 0.0) -> bytes:
    """Connect, send ``data``, read what comes back for up to ``read_s``, close."""
    with socket.create_connection(("127.0.0.1", port), timeout=RAFT_CONNECT_TIMEOUT_S) as s:
        s.settimeout(SOCKET_TIMEOUT_S)
        try:
            s.sendall(data)
        except OSError:
            return b""  # the node closed first: fine, it owes junk nothing
        return read_for(s, read_s) if read_s else b""


def read_for(s: socket.socket, seconds: float, bytes_max: int = 1 << 20) -> bytes:
    """What arrives within ``seconds`` (or until EOF / ``bytes_max``)."""
    got = bytearray()
    deadline = time.monotonic() + seconds
    while len(got) < bytes_max:
        left = deadline - time.monotonic()
        if left <= 0:
            break
        s.settimeout(left)
        try:
            chunk = s.recv(65536)
        except (TimeoutError, OSError):
            break
        if not chunk:
            break
        got += chunk
    return bytes(got)


def closed_by_peer(s: socket.socket, within_s: float) -> bool:
    """True once the other side closes (EOF or reset) within ``within_s``."""
    deadline = time.monotonic() + within_s
    while time.monotonic() < deadline:
        s.settimeout(max(0.01, deadline - time.monotonic()))
        try:
            if not s.recv(65536):
                return True
        except TimeoutError:
            return False
        except OSError:
            return True
    return False


def raft_connection(node: NodeProc) -> socket.socket:
    s = socket.create_connection(("127.0.0.1", node.raft_port), RAFT_CONNECT_TIMEOUT_S)
    s.settimeout(SOCKET_TIMEOUT_S)
    return s


def accepted_raft_connection(node: NodeProc, pid: int) -> socket.socket:
    """A Raft connection, once the node has accepted it (its fd count went up).

    PySyncObj listens with a backlog of 5: connecting faster than it accepts
    costs a SYN retransmit (1 s) per few connections, so a flood is paced.
    """
    before = open_fds(pid)
    s = raft_connection(node)
    # Not accepted in time (out of fds, or busy): the caller counts what it got.
    with contextlib.suppress(TimeoutError):
        wait_for("the node to accept", lambda: open_fds(pid) > before, timeout_s=1.0)
    return s


def open_fds(pid: int) -> int:
    return len(os.listdir(f"/proc/{pid}/fd"))


# -- the cluster -------------------------------------------------------------------------------


@dataclass
class Wire:
    cluster: Cluster
    baseline: Baseline
    fds: dict[str, int]


@pytest.fixture(scope="module")
def wire(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Wire]:
    """One 3-node cluster for the module, with its pids, memory and open fds noted."""
    with running_cluster(tmp_path_factory.mktemp("wire-fuzz")) as cluster:
        with cluster.client() as c:
            c.put("/wire/warm", "up")
        fds = {n.name: open_fds(n.proc.pid) for n in cluster.nodes if n.proc is not None}
        yield Wire(cluster, take_baseline(cluster), fds)


def assert_not_applied(cluster: Cluster, prefix: str) -> None:
    with cluster.client() as c:
        got = c.get(prefix, prefix=True, keys_only=True)
        assert got.count == 0, f"cut-short requests were applied: {[kv.key for kv in got.kvs]}"


# -- gRPC port -------------------------------------------------------------------------------


def test_control_request_built_here_is_applied(wire: Wire) -> None:
    """The raw-frame Put built here works, so its cut-short copies below test the node."""
    node = wire.cluster.nodes[0]
    with socket.create_connection(("127.0.0.1", node.client_port), timeout=SOCKET_TIMEOUT_S) as s:
        s.sendall(put_request(node, "/wire/control"))
        with wire.cluster.client() as c:
            wait_for("the raw Put to apply", lambda: c.get("/wire/control").first, 10.0)


def test_grpc_port_random_bytes(wire: Wire) -> None:
    """Random bytes, with and without the HTTP/2 preface, never take a node down."""
    rng = random.Random(SEED)
    for i in range(60):
        node = wire.cluster.nodes[i % 3]
        junk = rng.randbytes(rng.choice([0, 1, 9, 100, 4096, 70_000]))
        head = rng.choice([b"", PREFACE, PREFACE + h2_frame(SETTINGS, 0, 0, b""), PREFACE[:10]])
        send_and_close(node.client_port, head + junk, read_s=0.05 if i % 10 == 0 else 0.0)
    assert_survived(wire.cluster, wire.baseline, RSS_GROWTH_MIB_MAX)


def test_grpc_port_truncated_requests(wire: Wire) -> None:
    """A valid request cut short anywhere (and the connection closed) is never applied."""
    rng = random.Random(SEED + 1)
    for i in range(40):
        node = wire.cluster.nodes[i % 3]
        whole = put_request(node, f"/wire/cut/{i}")
        # Every cut inside the preface, the frame headers, HPACK and the message.
        cut = len(whole) * i // 40 if i < 20 else rng.randrange(len(whole))
        send_and_close(node.client_port, whole[:cut], read_s=0.05 if i % 8 == 0 else 0.0)
    assert_not_applied(wire.cluster, "/wire/cut/")
    assert_survived(wire.cluster, wire.baseline, RSS_GROWTH_MIB_MAX)


@pytest.mark.parametrize(
    ("case", "framing"),
    [
        ("longer", Framing(length=4096)),  # promises more than the stream holds
        ("max", Framing(length=0xFFFF_FFFF)),  # over any receive limit
        ("compressed", Framing(compressed=True)),  # compressed, with no grpc-encoding
        ("open", Framing(length=1_000_000, end_stream=False)),  # more promised, then silence
    ],
)
def test_grpc_length_prefix_that_lies(wire: Wire, case: str, framing: Framing) -> None:
    """A gRPC message whose length prefix lies is refused, not applied, and harmless."""
    for i, node in enumerate(wire.cluster.nodes):
        data = put_request(node, f"/wire/lie/{case}/{i}", framing)
        send_and_close(node.client_port, data, read_s=0.3)
    assert_not_applied(wire.cluster, f"/wire/lie/{case}/")
    assert_survived(wire.cluster, wire.baseline, RSS_GROWTH_MIB_MAX)


def test_grpc_port_many_connections(wire: Wire) -> None:
    """Hundreds of connections opened at once and closed leave no fds or memory behind."""
    for node in wire.cluster.nodes:
        held = []
        try:
            for _ in range(GRPC_CONNECTIONS):
                s = socket.create_connection(("127.0.0.1", node.client_port), SOCKET_TIMEOUT_S)
                held.append(s)
                s.sendall(PREFACE + h2_frame(SETTINGS, 0, 0, b""))
        finally:
            for s in held:
                s.close()
    assert_fds_back(wire)
    assert_survived(wire.cluster, wire.baseline, RSS_GROWTH_MIB_MAX)


# -- Raft port -------------------------------------------------------------------------------


def raft_frame(token: bytes, length: int | None = None) -> bytes:
    """PySyncObj's framing: a native signed 32-bit length, then the (encrypted) message."""
    return struct.pack("i", len(token) if length is None else length) + token


def foreign_tokens(rng: random.Random) -> list[bytes]:
    """Frames sealed with a secret that is not the cluster's (and Fernet, the old
    cipher), garbled in several ways."""
    foreign = PeerCipher("not-the-cluster-secret-" + rng.randbytes(8).hex())
    frame = foreign.encrypt_at_time(zlib.compress(rng.randbytes(64)), 10**6)
    flipped = bytearray(frame)
    flipped[len(frame) // 2] ^= 0x01
    fernet = Fernet(Fernet.generate_key())
    return [
        frame,
        frame[: len(frame) // 2],
        bytes(flipped),
        frame[:8] + rng.randbytes(80),
        foreign.encrypt_at_time(b"", 10**6),
        foreign.encrypt_at_time(b"x", 0),  # timestamp 0: older than anything seen
        fernet.encrypt(zlib.compress(rng.randbytes(64))),
        b"gAAAAA" + rng.randbytes(80),
    ]


def test_raft_port_random_bytes(wire: Wire) -> None:
    """Random bytes (some behind a plausible length) never take a node down."""
    rng = random.Random(SEED + 2)
    for i in range(60):
        node = wire.cluster.nodes[i % 3]
        junk = rng.randbytes(rng.choice([0, 1, 3, 4, 5, 100, 4096, 70_000]))
        length = rng.choice([None, 0, -1, -(2**31), 2**31 - 1, len(junk) + 1])
        data = junk if i % 2 else raft_frame(junk, length)
        send_and_close(node.raft_port, data)
    assert_survived(wire.cluster, wire.baseline, RSS_GROWTH_MIB_MAX)


def test_raft_port_foreign_frames(wire: Wire) -> None:
    """A whole frame holding a token the node cannot decrypt gets the connection closed."""
    rng = random.Random(SEED + 3)
    for node in wire.cluster.nodes:
        for token in foreign_tokens(rng):
            with raft_connection(node) as s:
                s.sendall(raft_frame(token))
                closed = closed_by_peer(s, RAFT_CONNECTION_TIMEOUT_S + 1.0)
                assert closed, f"{node.name} kept a connection that sent {token[:40]!r}"
            # Cut short: the node waits for the rest (we close: see the xfail test below).
            send_and_close(node.raft_port, raft_frame(token)[: rng.randrange(1, len(token) + 4)])
    assert_survived(wire.cluster, wire.baseline, RSS_GROWTH_MIB_MAX)


def test_raft_port_long_junk_stream(wire: Wire) -> None:
    """A frame that promises 2 GiB and streams junk is dropped without a trace once closed."""
    node = wire.cluster.nodes[1]
    chunk = random.Random(SEED + 4).randbytes(64 * 1024)
    deadline = time.monotonic() + JUNK_STREAM_S_MAX
    sent = 0
    with raft_connection(node) as s:
        s.settimeout(JUNK_STREAM_S_MAX)
        s.sendall(raft_frame(b"", 2**31 - 1))
        while sent < JUNK_STREAM_BYTES and time.monotonic() < deadline:
            try:
                s.sendall(chunk)
            except OSError:
                break  # the node hung up: also fine
            sent += len(chunk)
    # The buffer is freed when the node notices the close: wait for it, then check.
    wait_for(
        "the junk buffer to be freed",
        lambda: all_rss_within(wire, RSS_GROWTH_MIB_MAX),
        timeout_s=10.0,
    )
    assert_survived(wire.cluster, wire.baseline, RSS_GROWTH_MIB_MAX)


def all_rss_within(wire: Wire, growth_mib: float) -> bool:
    return all(
        rss_mib(pid) - wire.baseline.rss_mib[name] <= growth_mib
        for name, pid in wire.baseline.pids.items()
    )


def test_raft_port_many_connections(wire: Wire) -> None:
    """Connections opened and closed, one by one and held together, leave no fds behind."""
    rng = random.Random(SEED + 5)
    nodes = wire.cluster.nodes
    for i in range(RAFT_CONNECTIONS):
        send_and_close(nodes[i % 3].raft_port, rng.randbytes(rng.choice([0, 4, 64])))
    held = []
    try:
        for i in range(RAFT_CONNECTIONS):
            held.append(raft_connection(nodes[i % 3]))
    finally:
        for s in held:
            s.close()
    assert_fds_back(wire)
    assert_survived(wire.cluster, wire.baseline, RSS_GROWTH_MIB_MAX)


def assert_fds_back(wire: Wire) -> None:
    """Each node's open fds return to near the baseline (closed connections are released)."""

    def back() -> bool:
        return all(
            open_fds(wire.baseline.pids[name]) <= before + FDS_GROWTH_MAX
            for name, before in wire.fds.items()
        )

    wait_for("the nodes to release closed connections", back, timeout_s=10.0)


# -- afterwards ----------------------------------------------------------------------------------


def test_cluster_survived_and_commits(wire: Wire) -> None:
    """After all the junk: same pids, a write commits and every node reads it, bounded memory."""
    assert_survived(wire.cluster, wire.baseline, RSS_GROWTH_MIB_MAX)
    assert_fds_back(wire)
    with wire.cluster.client() as c:
        revision = c.put("/wire/after", "still here").revision
    for node in wire.cluster.nodes:
        with wire.cluster.client(node) as one:
            got = one.get("/wire/after").first
            assert got is not None and got.mod_revision == revision


# -- known PySyncObj gaps ------------------------------------------------------------------------


def test_idle_raft_connection_is_closed(wire: Wire) -> None:
    """A Raft connection that never completes the handshake is closed after the timeout."""
    node = wire.cluster.nodes[2]
    with raft_connection(node) as idle, raft_connection(node) as partial:
        partial.sendall(raft_frame(b"gAAAAA", 1000))  # a frame that never completes
        wait_s = 3 * RAFT_CONNECTION_TIMEOUT_S
        assert closed_by_peer(idle, wait_s), "an idle connection was kept open"
        assert closed_by_peer(partial, 1.0), "a half-sent frame's connection was kept open"


def test_raft_junk_before_the_handshake_is_cut_off(wire: Wire) -> None:
    """A peer that has not authenticated cannot make a node buffer megabytes of junk."""
    node = wire.cluster.nodes[0]
    chunk = random.Random(SEED + 6).randbytes(64 * 1024)
    sent = 0
    with raft_connection(node) as s:
        s.settimeout(JUNK_STREAM_S_MAX)
        s.sendall(raft_frame(b"", 2**31 - 1))
        deadline = time.monotonic() + JUNK_STREAM_S_MAX
        while sent < JUNK_STREAM_BYTES and time.monotonic() < deadline:
            try:
                s.sendall(chunk)
            except OSError:
                break  # cut off: what this test wants
            sent += len(chunk)
    # The kernel buffers a few MiB on both sides before a reset is seen.
    assert sent < JUNK_STREAM_BYTES // 2, f"the node took {sent >> 20} MiB of junk"


@pytest.fixture
def own_cluster(tmp_path: Path) -> Iterator[Cluster]:
    """A cluster this test may break (it makes a node's Raft listener go away)."""
    with running_cluster(tmp_path) as c:
        yield c


def test_raft_listener_survives_running_out_of_fds(own_cluster: Cluster) -> None:
    """After a connection flood exhausts a node's fds and ends, its Raft port listens again."""
    node = own_cluster.nodes[0]
    assert node.proc is not None
    pid = node.proc.pid
    soft, hard = resource.prlimit(pid, resource.RLIMIT_NOFILE)
    fd_limit = open_fds(pid) + FLOOD_FDS  # a low limit keeps the flood small
    resource.prlimit(pid, resource.RLIMIT_NOFILE, (fd_limit, hard))
    held: list[socket.socket] = []
    try:
        for _ in range(FLOOD_FDS + 8):  # more than the node has fds for
            try:
                held.append(accepted_raft_connection(node, pid))
            except ConnectionError:
                break  # refused or reset: the listener is gone already
        try:  # the node accepts a few per second: wait until it has used up its fds
            wait_for("the flood to use up the node's fds", lambda: open_fds(pid) >= fd_limit - 1)
        except TimeoutError:
            raise AssertionError("the flood did not exhaust the node's fds") from None
    finally:
        for s in held:
            s.close()
        resource.prlimit(pid, resource.RLIMIT_NOFILE, (soft, hard))

    def listens() -> bool:
        with socket.create_connection(("127.0.0.1", node.raft_port), 1.0):
            return True

    wait_for(f"{node.name}'s Raft port to accept connections again", listens, timeout_s=30.0)
