"""The run's deadline (``ATLAS_RUN_TIMEOUT_SECONDS``): a stuck run ends, cleanly, on time.

Every statement already has its own limits (`pipelines.config.Settings`), but a run made
of many statements, each under its limit, could still go on for hours. When the deadline
passes:

* Kimai: no statement starts any more, and each statement's ``max_statement_time`` is
  capped by the time left when it starts (`cap`), so a read in progress ends on time;
* Atlas DB: a watchdog thread cancels the statements of this process that are running,
  again and again until the run has stopped (dbt goes on to other models after one
  fails), and `pipelines.lock.HeldLock.check` refuses every further write;
* the runner records "timed out after N s" in the audit, releases the run lock and exits 4.

The deadline is process-wide: a process runs one run at a time (the command line; the HTTP
service's single worker), and Kimai's readers are called from the run's thread pools and
dlt's, which should not all have to carry it along.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager

from pipelines.errors import RunTimedOut

log = logging.getLogger("pipelines.deadline")

WATCH_INTERVAL_SECONDS = 0.5
"""How often the watchdog cancels this process's statements once the deadline passed."""

_state: dict[str, float] = {}
_guard = threading.Lock()


def remaining() -> float | None:
    """Seconds left before the current run's deadline; None without a deadline."""
    with _guard:
        at = _state.get("at")
    return None if at is None else at - time.monotonic()


def expired() -> bool:
    """Whether the current run has passed its deadline."""
    left = remaining()
    return left is not None and left <= 0


def timed_out() -> RunTimedOut:
    """The error of a run that passed its deadline, with the message the audit records."""
    with _guard:
        seconds = _state.get("seconds", 0.0)
    return RunTimedOut(
        f"the run timed out after {seconds:g} s (ATLAS_RUN_TIMEOUT_SECONDS) and was stopped;"
        " the next run repairs what it left"
    )


def check() -> None:
    """Raise `RunTimedOut` once the current run has passed its deadline."""
    if expired():
        raise timed_out()


def cap(limit: float) -> float:
    """A statement's time limit: `limit` (0: none), or less when the deadline is nearer.

    Returns:
        Seconds; 0 when there is neither a limit nor a deadline.

    Raises:
        RunTimedOut: The deadline has passed: no statement may start.

    """
    left = remaining()
    if left is None:
        return limit
    if left <= 0:
        raise timed_out()
    return min(limit, left) if limit > 0 else left


@contextmanager
def run_deadline(
    seconds: float, cancel: Callable[[], int] | None = None
) -> Iterator[Callable[[], None]]:
    """Set the deadline of the run in the block; 0 sets none.

    Args:
        seconds: The run's time limit, from now.
        cancel: Cancels the statements this process runs on Atlas DB (returns how many);
            called by a watchdog thread once the deadline passed, until the block ends
            or the yielded function is called.

    Yields:
        Stops the watchdog: call it before writing the audit of a run that timed out, so
        that its own statements are not cancelled.

    """
    stop = threading.Event()
    watchdog = None
    with _guard:
        if seconds > 0:
            _state.update(at=time.monotonic() + seconds, seconds=seconds)
    if seconds > 0 and cancel is not None:

        def watch() -> None:
            if stop.wait(max(0.0, remaining() or 0.0)):
                return
            log.info("the run passed its deadline (%g s): stopping it", seconds)
            while not stop.is_set():
                try:
                    cancel()
                except Exception as exc:  # the run's own error path reports what matters
                    log.debug("cancelling the run's statements failed: %s", exc)
                stop.wait(WATCH_INTERVAL_SECONDS)

        watchdog = threading.Thread(target=watch, name="run-deadline", daemon=True)
        watchdog.start()

    def halt() -> None:
        stop.set()
        if watchdog is not None and watchdog is not threading.current_thread():
            watchdog.join()

    try:
        yield halt
    finally:
        halt()
        with _guard:
            _state.clear()
