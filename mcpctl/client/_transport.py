"""Where a ``Client``'s calls go: endpoints, TLS and channels.

``ChannelFactory`` is the transport seam (httpx's ``MockTransport``): a
``Client`` asks it for one channel per endpoint, and every stub (KV, Cluster,
Watch, Config, Health) is built on that channel. The default,
``grpc_channels``, opens real gRPC channels; tests hand in fake channels whose
calls answer or raise chosen errors, per endpoint and per attempt.
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Callable, Sequence

import grpc

from mcpctl import limits

DEFAULT_ENDPOINTS = ("127.0.0.1:7101", "127.0.0.1:7102", "127.0.0.1:7103")
ENDPOINTS_ENV = "MCPCTL_ENDPOINTS"
TOKEN_ENV = "MCPCTL_TOKEN"

# The channel for one endpoint (``host:port``); it is opened once and cached.
ChannelFactory = Callable[[str], grpc.Channel]

# gRPC's own reconnect backoff stays short (the client's rules do the
# waiting), and gRPC's transparent retries stay off (they would resend a
# write behind the client's back).
CHANNEL_OPTIONS: tuple[tuple[str, int], ...] = (
    ("grpc.max_receive_message_length", limits.GRPC_SEND_BYTES_MAX),
    ("grpc.max_send_message_length", limits.GRPC_SEND_BYTES_MAX),
    ("grpc.initial_reconnect_backoff_ms", 100),
    ("grpc.min_reconnect_backoff_ms", 100),
    ("grpc.max_reconnect_backoff_ms", 1000),
    ("grpc.enable_retries", 0),
)


def check_endpoint(endpoint: str) -> str:
    """``endpoint`` if it is ``host:port``; ``ValueError`` saying what is missing.

    grpc would take ``garbage`` as a host name on its default port and fail
    with a DNS error; the port is what is missing, so say that. A target with a
    scheme (``unix:/path``, ``dns:///host:port``) is left to grpc.
    """
    host, sep, port = endpoint.rpartition(":")
    if not sep or not port or endpoint.endswith("]"):
        raise ValueError(
            f"endpoint {endpoint!r} has no port: write host:port (e.g. 127.0.0.1:7101)"
        )
    if not host:
        raise ValueError(
            f"endpoint {endpoint!r} has no host: write host:port (e.g. 127.0.0.1:7101)"
        )
    if port.isdigit() and not 0 < int(port) <= 65535:
        raise ValueError(f"endpoint {endpoint!r}: port {port} is not in 1..65535")
    return endpoint


def endpoints_from_env(value: str | None = None) -> list[str]:
    raw = value if value is not None else os.environ.get(ENDPOINTS_ENV, "")
    found = [e.strip() for e in raw.split(",") if e.strip()]
    return found or list(DEFAULT_ENDPOINTS)


def client_endpoints(endpoints: Sequence[str] | str | None) -> list[str]:
    """A client's endpoints: a list, a comma-separated string, or (None) env
    MCPCTL_ENDPOINTS / the defaults; each checked by ``check_endpoint``."""
    if endpoints is None:
        endpoints = endpoints_from_env()
    elif isinstance(endpoints, str):
        endpoints = endpoints_from_env(endpoints)
    if not endpoints:
        raise ValueError("at least one endpoint is required")
    return [check_endpoint(e) for e in endpoints]


def auth_metadata(token: str | None) -> tuple[tuple[str, str], ...]:
    """The call metadata of a bearer ``token`` (default: env MCPCTL_TOKEN)."""
    token = token if token is not None else os.environ.get(TOKEN_ENV) or None
    return (("authorization", f"Bearer {token}"),) if token else ()


def client_tls(
    cacert: str | None, cert: str | None, key: str | None
) -> tuple[bytes | None, bytes | None, bytes | None] | None:
    """The TLS files of a client (arguments, else env MCPCTL_CACERT/_CERT/_KEY),
    read; None when TLS is off. Both clients build credentials from these."""
    cacert = cacert if cacert is not None else os.environ.get("MCPCTL_CACERT")
    cert = cert if cert is not None else os.environ.get("MCPCTL_CERT")
    key = key if key is not None else os.environ.get("MCPCTL_KEY")
    if not (cacert or cert or key):
        return None
    if bool(cert) != bool(key):
        raise ValueError("give both a client certificate and its key (--cert and --key)")

    def read(path: str | None, what: str) -> bytes | None:
        if not path:
            return None
        try:
            with open(path, "rb") as f:
                return f.read()
        except OSError as e:
            raise ValueError(f"{what} {path}: {e.strerror}") from None

    return read(cacert, "--cacert"), read(key, "--key"), read(cert, "--cert")


def tls_credentials(
    cacert: str | None, cert: str | None, key: str | None
) -> grpc.ChannelCredentials | None:
    """Channel credentials from TLS files (env MCPCTL_CACERT/_CERT/_KEY for
    those not given); None when TLS is off."""
    files = client_tls(cacert, cert, key)
    if files is None:
        return None
    root, private_key, chain = files
    return grpc.ssl_channel_credentials(
        root_certificates=root, private_key=private_key, certificate_chain=chain
    )


def grpc_channels(credentials: grpc.ChannelCredentials | None) -> ChannelFactory:
    """The real transport: a gRPC channel per endpoint, TLS when ``credentials``."""

    def open_channel(endpoint: str) -> grpc.Channel:
        options = list(CHANNEL_OPTIONS)
        if credentials is not None:
            return grpc.secure_channel(endpoint, credentials, options=options)
        return grpc.insecure_channel(endpoint, options=options)

    return open_channel


_SETTLED = (
    grpc.ChannelConnectivity.READY,
    grpc.ChannelConnectivity.TRANSIENT_FAILURE,
    grpc.ChannelConnectivity.SHUTDOWN,
)


def wait_connected(channel: grpc.Channel, timeout_s: float) -> bool:
    """Connect ``channel`` if it is idle and wait until it is ready (True) or
    its connection attempt failed or ``timeout_s`` passed (False).

    A failed attempt (refused, unresolvable host) shows as TRANSIENT_FAILURE
    at once: the caller moves on without waiting out its deadline.

    Watched in the calling thread through the channel's core object (what
    grpc's own connectivity poller calls): ``Channel.subscribe`` starts a
    poller thread that sits in 0.2 s waits after it is unsubscribed, and
    closing the channel waits for it (0.2 s on every short-lived client,
    ``mcpctl get`` included). Without that object (another grpc build), the
    public ``subscribe`` is used."""
    core = getattr(channel, "_channel", None)
    if core is None or not hasattr(core, "watch_connectivity_state"):
        return _wait_subscribed(channel, timeout_s)
    deadline = time.time() + max(0.0, timeout_s)
    state = _STATES[core.check_connectivity_state(True)]
    while state not in _SETTLED:
        if time.time() >= deadline:
            return False
        # Returns when the state changes or at the deadline; nothing stays pending.
        core.watch_connectivity_state(state.value[0], deadline)
        state = _STATES[core.check_connectivity_state(False)]
    return state is grpc.ChannelConnectivity.READY


# The core's connectivity numbers -> grpc.ChannelConnectivity.
_STATES = {c.value[0]: c for c in grpc.ChannelConnectivity}


def _wait_subscribed(channel: grpc.Channel, timeout_s: float) -> bool:
    settled: list[grpc.ChannelConnectivity] = []
    done = threading.Event()

    def on_change(state: grpc.ChannelConnectivity) -> None:
        if state in _SETTLED and not settled:
            settled.append(state)
            done.set()

    channel.subscribe(on_change, try_to_connect=True)
    try:
        done.wait(max(0.0, timeout_s))
    finally:
        channel.unsubscribe(on_change)
    return bool(settled) and settled[0] is grpc.ChannelConnectivity.READY
