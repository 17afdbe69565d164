"""A demo router: an HTTP front that sends each request to a live instance.

``python -m mcpctl.demo.router --port P --model M [--policy weighted|least-load|p2c]``

Each ``POST`` is forwarded (same path and body) to an endpoint chosen by an
``InstancePicker`` for the body's ``"model"`` (default ``--model``): a live,
enabled, non-draining instance, else the model's static fallback
(docs/fleet.md). On a connection failure the request is retried once on
another instance. The answer carries ``X-Mcp-Endpoint`` (where it went) and
``X-Mcp-Attempts``. ``GET /fleet`` lists what the picker sees (JSON). No
live instance and no fallback: 503.
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import signal
import threading
import urllib.parse
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from types import FrameType
from typing import Final

from mcpctl.client import Client
from mcpctl.errors import McpError
from mcpctl.fleet.picker import InstancePicker
from mcpctl.fleet.select import POLICIES, Policy
from mcpctl.mcp.schema import MODELS_MAX

BODY_BYTES_MAX: Final = 64 * 1024
FORWARD_TIMEOUT_S: Final = 30.0
# One retry, on another instance, when the first could not be reached.
ATTEMPTS_MAX: Final = 2


class Pickers:
    """One started InstancePicker per model asked for (at most MODELS_MAX)."""

    def __init__(self, client: Client, policy: Policy) -> None:
        self._client = client
        self._policy = policy
        self._lock = threading.Lock()
        self._pickers: dict[str, InstancePicker] = {}

    def get(self, model: str) -> InstancePicker:
        with self._lock:
            picker = self._pickers.get(model)
            if picker is None:
                if len(self._pickers) >= MODELS_MAX:
                    raise ValueError(f"this router serves at most {MODELS_MAX} models")
                picker = InstancePicker(self._client, model, policy=self._policy).start()
                self._pickers[model] = picker
            return picker

    def stop(self) -> None:
        with self._lock:
            for picker in self._pickers.values():
                picker.stop()


class Unreached(Exception):
    """The connection could not be made: nothing was sent, so another instance may try."""


def forward(endpoint: str, path: str, body: bytes) -> tuple[int, bytes]:
    """POST ``body`` to ``endpoint`` + ``path``. ``Unreached`` when the connection
    fails; ``OSError`` after it was made (the request may have been handled)."""
    url = urllib.parse.urlsplit(endpoint)
    https = url.scheme == "https"
    conn_class = http.client.HTTPSConnection if https else http.client.HTTPConnection
    conn = conn_class(url.hostname or "", url.port, timeout=FORWARD_TIMEOUT_S)
    try:
        try:
            conn.connect()
        except OSError as e:
            raise Unreached(str(e)) from None
        conn.request("POST", path, body, {"Content-Type": "application/json"})
        resp = conn.getresponse()
        return resp.status, resp.read()
    finally:
        conn.close()


def handler(pickers: Pickers, default_model: str) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"
        # Headers and body leave in two writes: with Nagle on, the body waits for
        # the peer's delayed ACK of the headers (~40 ms per answer).
        disable_nagle_algorithm = True

        def log_message(self, format: str, *args: object) -> None:  # quiet
            pass

        def _send(self, code: int, body: bytes, headers: dict[str, str] | None = None) -> None:
            self.send_response(code)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            for name, value in (headers or {}).items():
                self.send_header(name, value)
            self.end_headers()
            self.wfile.write(body)

        def _error(self, code: int, message: str) -> None:
            self._send(code, json.dumps({"error": message}).encode())

        def do_GET(self) -> None:
            model = self.path.removeprefix("/fleet").strip("/") or default_model
            try:
                instances = pickers.get(model).instances()
            except (ValueError, McpError) as e:
                self._error(503, str(e))
                return
            rows = [
                {"id": i.id, "endpoint": i.endpoint, "weight": i.weight, "healthy": i.healthy,
                 "draining": i.operator.draining, "in_flight": i.in_flight}
                for i in instances
            ]  # fmt: skip
            self._send(200, json.dumps({"model": model, "instances": rows}).encode())

        def do_POST(self) -> None:
            length = int(self.headers.get("Content-Length") or 0)
            if length > BODY_BYTES_MAX or length < 0:
                self.close_connection = True
                self._error(413, f"body over {BODY_BYTES_MAX} bytes")
                return
            body = self.rfile.read(length) if length else b"{}"
            try:
                asked = json.loads(body or b"{}").get("model")
            except (ValueError, AttributeError):
                self._error(400, "the body is not a JSON object")
                return
            model = asked if isinstance(asked, str) and asked else default_model
            try:
                picker = pickers.get(model)
            except (ValueError, McpError) as e:
                self._error(503, str(e))
                return
            tried: list[str] = []
            for _ in range(ATTEMPTS_MAX):
                target = picker.pick_target(exclude=tried)
                if target is None:
                    break
                tried.append(target.endpoint)
                try:
                    status, answer = forward(target.endpoint, self.path, body)
                except Unreached:
                    continue  # nothing sent: once more, elsewhere
                except (
                    OSError,
                    http.client.HTTPException,
                ) as e:  # sent: not retried (it may have run)
                    self._error(502, f"{target.endpoint}: {e}")
                    return
                headers = {"X-Mcp-Endpoint": target.endpoint, "X-Mcp-Attempts": str(len(tried))}
                self._send(status, answer, headers)
                return
            what = f"tried {', '.join(tried)}" if tried else "no live instance and no fallback"
            self._error(503, f"model {model!r}: {what}")

    return Handler


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, required=True, help="0: any free port")
    parser.add_argument("--url-file", default=None, help="write the router's URL here once up")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--model", required=True, help="the model when a body names none")
    parser.add_argument("--policy", choices=POLICIES, default="weighted")
    parser.add_argument("--endpoints", default=None, help="host:port list (env MCPCTL_ENDPOINTS)")
    parser.add_argument("--token", default=os.environ.get("MCPCTL_TOKEN"), help="env MCPCTL_TOKEN")
    args = parser.parse_args(argv)
    done = threading.Event()

    def stop(signum: int, frame: FrameType | None) -> None:
        done.set()

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    with Client(args.endpoints, token=args.token) as client:
        pickers = Pickers(client, args.policy)
        while not done.is_set():
            try:
                pickers.get(args.model)
                break
            except McpError as e:  # the cluster is not up yet
                print(f"waiting for the cluster: {e}", flush=True)
                done.wait(1.0)
        else:
            return 0
        try:
            server = ThreadingHTTPServer((args.host, args.port), handler(pickers, args.model))
        except OSError as e:
            pickers.stop()
            parser.error(f"--port {args.port}: {e.strerror}")
        server.daemon_threads = True
        threading.Thread(target=server.serve_forever, name="http", daemon=True).start()
        url = f"http://{args.host}:{server.server_address[1]}"
        if args.url_file:
            Path(args.url_file).write_text(url + "\n")
        print(f"routing {args.model} on {url}", flush=True)
        done.wait()
        server.shutdown()
        pickers.stop()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
