"""The Raft tick watchdog: a tick loop that keeps failing must end the process."""

from __future__ import annotations

import logging

from mcpctl.raft.watchdog import TickWatchdog


def _failing_tick(logger: logging.Logger) -> None:
    try:
        raise IndexError("list index out of range")
    except IndexError:
        # The exact call PySyncObj makes in its _autoTickThread.
        logger.exception("failed _onTick in _autoTickThread")


def test_consecutive_tick_failures_trigger_the_wedge_action() -> None:
    """N failures in a row (no good tick between) fire on_wedged exactly once."""
    fired: list[int] = []
    dog = TickWatchdog(5, on_wedged=lambda: fired.append(dog.failures))
    logger = logging.getLogger("test.pysyncobj.wedge")
    logger.addHandler(dog)
    logger.propagate = False
    try:
        for _ in range(4):
            _failing_tick(logger)
        assert fired == []
        _failing_tick(logger)
        assert fired == [5]
        _failing_tick(logger)
        assert fired == [5]
    finally:
        logger.removeHandler(dog)


def test_a_good_tick_resets_the_count() -> None:
    """Occasional failures separated by good ticks never fire."""
    fired: list[bool] = []
    dog = TickWatchdog(3, on_wedged=lambda: fired.append(True))
    logger = logging.getLogger("test.pysyncobj.reset")
    logger.addHandler(dog)
    logger.propagate = False
    try:
        for _ in range(10):
            _failing_tick(logger)
            _failing_tick(logger)
            dog.tick_ok()
        assert fired == []
    finally:
        logger.removeHandler(dog)


def test_other_errors_are_not_counted() -> None:
    """Only the tick-loop failure counts; other error lines do not."""
    fired: list[bool] = []
    dog = TickWatchdog(2, on_wedged=lambda: fired.append(True))
    logger = logging.getLogger("test.pysyncobj.other")
    logger.addHandler(dog)
    logger.propagate = False
    try:
        for _ in range(5):
            logger.error("failed to connect")
        assert fired == [] and dog.failures == 0
    finally:
        logger.removeHandler(dog)
