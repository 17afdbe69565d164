"""A tiny service that reads its config file at start and again on SIGHUP.

``python -m tests.render_reader FILE PIDFILE LOG``: appends one JSON line to
LOG per (re)load, ``{"n": N, "content": ...}`` (content: the file's text, ""
while it does not exist), and writes its pid to PIDFILE once its handler is
in place, so ``reload_cmd: kill -HUP $(cat PIDFILE)`` reaches a real process
that really re-reads the file (tests/integration/test_render.py).
"""

from __future__ import annotations

import json
import os
import signal
import sys
from pathlib import Path
from types import FrameType


def main() -> None:
    path, pidfile, log = (Path(a) for a in sys.argv[1:4])
    loads = 0

    def load(signum: int = 0, frame: FrameType | None = None) -> None:
        nonlocal loads
        try:
            content = path.read_text()
        except FileNotFoundError:
            content = ""
        loads += 1
        with open(log, "a") as f:
            f.write(json.dumps({"n": loads, "content": content}) + "\n")

    signal.signal(signal.SIGHUP, load)
    signal.signal(signal.SIGTERM, lambda signum, frame: sys.exit(0))
    load()
    tmp = pidfile.with_suffix(".tmp")
    tmp.write_text(str(os.getpid()))
    tmp.replace(pidfile)
    while True:
        signal.pause()


if __name__ == "__main__":
    main()
