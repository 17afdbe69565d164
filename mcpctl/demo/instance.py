"""A fake model instance that joins the live fleet (docs/fleet.md).

``python -m mcpctl.demo.instance --model M --port P [--weight W] [--id ID]``

Serves ``POST /v1/completions`` (any path, really) on 127.0.0.1:P with a small
JSON answer naming the model and the instance, registers itself under
``/mcp/instances/M/ID`` on a lease (``Registration``), and reports its
in-flight request count and latency as they change (written at the bounded
rate). ``GET /healthz`` answers 200. SIGTERM/Ctrl-C: deregisters at once
(the lease is revoked); kill -9: gone within the TTL + the lease grace.
Prints ``registered <model>/<id> at <endpoint>`` when it is in the fleet.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import FrameType

from mcpctl import limits
from mcpctl.client import Client
from mcpctl.errors import McpError
from mcpctl.fleet.registration import Registration, default_id

# A request body is at most this big (the demo's answers are tiny).
BODY_BYTES_MAX = 64 * 1024


class Counter:
    """In-flight requests and a smoothed latency, reported to the Registration."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.registration: Registration | None = None  # set once it exists
        self.in_flight = 0
        self.served = 0
        self.latency_ms = 0.0

    def begin(self) -> None:
        with self._lock:
            self.in_flight += 1
            if self.registration is not None:
                self.registration.report(in_flight=self.in_flight)

    def end(self, latency_ms: float) -> None:
        with self._lock:
            self.in_flight -= 1
            self.served += 1
            self.latency_ms = 0.8 * self.latency_ms + 0.2 * latency_ms
            if self.registration is not None:
                self.registration.report(in_flight=self.in_flight, latency_ms=self.latency_ms)


def handler(
    model: str, ident: str, counter: Counter, delay_s: float
) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"
        # Headers and body leave in two writes: with Nagle on, the body waits for
        # the peer's delayed ACK of the headers (~40 ms per answer).
        disable_nagle_algorithm = True

        def log_message(self, format: str, *args: object) -> None:  # quiet
            pass

        def _send(self, code: int, obj: object) -> None:
            body = json.dumps(obj).encode()
            self.send_response(code)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def do_GET(self) -> None:
            self._send(200, {"model": model, "instance": ident, "ok": True})

        def do_POST(self) -> None:
            started = time.monotonic()
            counter.begin()
            try:
                length = int(self.headers.get("Content-Length") or 0)
                if length > BODY_BYTES_MAX or length < 0:
                    self._send(413, {"error": f"body over {BODY_BYTES_MAX} bytes"})
                    self.close_connection = True
                    return
                raw = self.rfile.read(length) if length else b"{}"
                try:
                    prompt = str(json.loads(raw or b"{}").get("prompt", ""))[:200]
                except (ValueError, AttributeError):
                    self._send(400, {"error": "the body is not a JSON object"})
                    return
                if delay_s:
                    time.sleep(delay_s)
                text = f"[{model}/{ident}] echo: {prompt}"
                self._send(200, {"model": model, "instance": ident, "text": text})
            finally:
                counter.end((time.monotonic() - started) * 1000)

    return Handler


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", required=True)
    parser.add_argument("--port", type=int, required=True, help="0: any free port")
    parser.add_argument("--host", default="127.0.0.1", help="listen address")
    parser.add_argument(
        "--advertise", default=None, help="the endpoint URL to register (default http://HOST:PORT)"
    )
    parser.add_argument("--id", default=None, help="instance id (default: host-pid-random)")
    parser.add_argument("--weight", type=int, default=1)
    parser.add_argument("--ttl", type=int, default=limits.FLEET_TTL_S_DEFAULT)
    parser.add_argument("--delay-ms", type=float, default=0.0, help="added to every answer")
    parser.add_argument("--endpoints", default=None, help="host:port list (env MCPCTL_ENDPOINTS)")
    parser.add_argument("--token", default=os.environ.get("MCPCTL_TOKEN"), help="env MCPCTL_TOKEN")
    args = parser.parse_args(argv)
    ident = args.id if args.id is not None else default_id()
    done = threading.Event()

    def stop(signum: int, frame: FrameType | None) -> None:
        done.set()

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    counter = Counter()
    serve = handler(args.model, ident, counter, args.delay_ms / 1000)
    try:
        server = ThreadingHTTPServer((args.host, args.port), serve)
    except OSError as e:
        parser.error(f"--port {args.port}: {e.strerror}")
    endpoint = args.advertise or f"http://{args.host}:{server.server_address[1]}"
    with Client(args.endpoints, token=args.token) as client:
        try:
            registration = Registration(
                client,
                model=args.model,
                endpoint=endpoint,
                weight=args.weight,
                ttl=args.ttl,
                instance_id=ident,
            )
        except McpError as e:
            parser.error(e.message)
        counter.registration = registration
        server.daemon_threads = True
        threading.Thread(target=server.serve_forever, name="http", daemon=True).start()
        while not done.is_set():
            try:
                registration.start()
                break
            except McpError as e:  # the cluster is not up yet: keep trying until stopped
                print(f"waiting for the cluster: {e}", flush=True)
                done.wait(1.0)
        else:
            server.shutdown()
            return 0
        print(f"registered {args.model}/{registration.id} at {endpoint}", flush=True)
        done.wait()
        registration.close()
        server.shutdown()
        print(f"deregistered after {counter.served} requests", flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
