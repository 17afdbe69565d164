"""A watchdog for PySyncObj's tick thread: a loop that keeps failing ends the process.

PySyncObj logs "failed _onTick" and retries forever (the 20k-burst wedge in
the notes); a node in that state stays connected but never acks or votes.
Exiting with ``EXIT_RAFT_WEDGED`` lets the supervisor restart it from disk.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable

import structlog

log = structlog.get_logger("mcpctl.raft.watchdog")

EXIT_RAFT_WEDGED = 70


def _exit_wedged() -> None:
    logging.shutdown()
    os._exit(EXIT_RAFT_WEDGED)


class TickWatchdog(logging.Handler):
    """Counts consecutive 'failed _onTick' records from PySyncObj's tick thread.

    PySyncObj logs and retries a failing tick forever; a node in that state
    stays connected but never acks or votes. Past ``failures_max`` failures
    in a row (no successful tick between them) ``on_wedged`` runs: by
    default the process exits with EXIT_RAFT_WEDGED so that its supervisor
    restarts it from its data directory.
    """

    def __init__(self, failures_max: int, on_wedged: Callable[[], None] = _exit_wedged) -> None:
        super().__init__(level=logging.ERROR)
        self.failures_max = failures_max
        self.failures = 0
        self._on_wedged = on_wedged

    def emit(self, record: logging.LogRecord) -> None:
        if "failed _onTick" not in record.getMessage():
            return
        self.failures += 1
        if self.failures == self.failures_max:
            log.critical(
                "raft tick loop keeps failing; exiting for the supervisor to restart",
                failures=self.failures,
                exit_code=EXIT_RAFT_WEDGED,
            )
            self._on_wedged()

    def tick_ok(self) -> None:
        self.failures = 0
