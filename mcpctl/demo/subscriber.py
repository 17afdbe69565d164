"""A demo service that hot-reloads its model routing table.

``python -m mcpctl.demo.subscriber [--endpoints A,B,C] [--prefix /mcp/models/]``

Each key under the prefix is one model (``/mcp/models/<name>``) whose value
is YAML or JSON, validated with the same schema as ``mcpctl apply``
(``mcpctl.mcp.schema.Model``: an http(s) ``endpoint``, optionally ``weight``
and the other model fields). The table is kept live with a ``ConfigWatcher``:
every change is logged the moment it arrives, and the table is printed again,
without a restart. A value that does not parse or that the schema rejects is
reported and the model keeps its last good entry.
"""

from __future__ import annotations

import argparse
import signal
import sys
import threading
import time
from types import FrameType

from mcpctl.client import Client
from mcpctl.client.watcher import Change, ConfigWatcher
from mcpctl.errors import InvalidArgument
from mcpctl.mcp import layout
from mcpctl.mcp.schema import Model


def parse_model(name: str, value: bytes) -> Model:
    """The model ``name`` holds, checked exactly as ``apply`` checks it.

    The value is decoded as the one model of a document stored under
    ``/mcp/models/<name>`` (whatever ``--prefix`` is), so the key layout and
    the schema are the ones ``mcpctl apply`` and ``export`` use.
    ``InvalidArgument`` (or its ``SchemaError``) names the problem, never the value.
    """
    (model,) = layout.decode({layout.MODELS + name: value}).models
    return model


class RoutingTable:
    def __init__(self, prefix: str) -> None:
        self.prefix = prefix
        self.models: dict[str, Model] = {}
        self.lock = threading.Lock()

    def _say(self, line: str) -> None:
        stamp = time.strftime("%H:%M:%S")
        print(f"{stamp} {line}", flush=True)

    def _put(self, name: str, value: bytes) -> None:
        try:
            model = parse_model(name, value)
        except InvalidArgument as e:
            reason = "; ".join(line.strip() for line in e.message.splitlines())
            self._say(f"model {name}: invalid config ignored ({reason}); keeping the last good one")
            return
        with self.lock:
            old = self.models.get(name)
            self.models[name] = model
        verb = "added" if old is None else "changed"
        self._say(f"model {verb}: {name} -> {model.endpoint} (weight {model.weight})")

    def on_change(self, changes: list[Change]) -> None:
        for ch in changes:
            name = ch.key.removeprefix(self.prefix)
            if ch.type == "DELETE":
                with self.lock:
                    gone = self.models.pop(name, None)
                if gone is not None:
                    self._say(f"model removed: {name}")
            elif ch.value is not None:
                self._put(name, ch.value)
        self.show()

    def show(self) -> None:
        with self.lock:
            rows = sorted(self.models.values(), key=lambda m: m.name)
        lines = [f"routing table ({len(rows)} models):"]
        lines += [f"  {m.name:<24} {m.endpoint:<48} weight={m.weight}" for m in rows]
        print("\n".join(lines), flush=True)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--endpoints", default=None, help="host:port list (env MCPCTL_ENDPOINTS)")
    parser.add_argument("--prefix", default="/mcp/models/")
    args = parser.parse_args(argv)
    table = RoutingTable(args.prefix)
    done = threading.Event()

    def stop(signum: int, frame: FrameType | None) -> None:
        done.set()

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    try:
        client = Client(args.endpoints)
    except ValueError as e:  # an endpoint without a port, say
        parser.error(str(e))
    with client:
        while not done.is_set():
            try:
                watcher = ConfigWatcher(
                    client,
                    args.prefix,
                    on_change=table.on_change,
                    on_error=lambda e: print(f"watch error: {e}", file=sys.stderr, flush=True),
                    initial_changes=True,
                ).start()
                break
            except Exception as e:  # cluster not up yet: keep trying until stopped
                print(f"waiting for the cluster: {e}", file=sys.stderr, flush=True)
                done.wait(1.0)
        else:
            return 0
        if not watcher.snapshot():
            table.show()
        print(f"watching {args.prefix} from revision {watcher.revision}", flush=True)
        done.wait()
        watcher.stop()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
