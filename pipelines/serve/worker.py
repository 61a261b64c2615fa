"""Runs started over HTTP: one at a time, on a thread of their own, through the CLI's runner.

The event loop never waits for a run: it waits only until the run's audit row exists (or
the run lock was refused), so ``/healthz`` and the other pages keep answering while a long
run goes.
"""

from __future__ import annotations

import logging
import os
import socket
import threading
from collections.abc import Callable
from concurrent.futures import Future, wait
from dataclasses import dataclass

from pipelines.config import Settings
from pipelines.errors import LockHeld
from pipelines.runner import RunRequest, execute

LOG = logging.getLogger("pipelines.serve")


@dataclass
class Current:
    """The run this service is executing."""

    command: str
    started_by: str
    started: Future[str]
    """Resolved with the run id once the audit row exists."""
    run_id: str | None = None

    def describe(self) -> str:
        """The holder, in the words of the lock's own message."""
        run = f"run {self.run_id}" if self.run_id else "a run"
        return (
            f"another run holds the lock: {run} ({self.command}) started over the API by"
            f" {self.started_by}, kimai-atlas-sync pid={os.getpid()} host={socket.gethostname()}"
        )


class RunWorker:
    """Executes at most one run at a time, each on its own daemon thread.

    A daemon thread: a service killed (or drained past its timeout) mid-run must exit; the
    run's audit row stays 'running' and the next run marks it 'crashed' and repairs.
    """

    def __init__(self, settings: Settings, say: Callable[[str], None]) -> None:
        self._settings = settings
        self._say = say
        self._mutex = threading.Lock()
        self._current: Current | None = None
        self._thread: threading.Thread | None = None
        self._idle = threading.Event()
        self._idle.set()

    @property
    def current(self) -> Current | None:
        """The run in progress, if any."""
        return self._current

    def submit(self, request: RunRequest) -> Future[str]:
        """Start `request` on the worker thread.

        Returns:
            A future resolved with the run id once the audit row is written, or failed with
            the runner's error when the run could not start (`LockHeld`: another run,
            here or elsewhere, holds the lock).

        Raises:
            LockHeld: This service is already executing a run.

        """
        started: Future[str] = Future()
        with self._mutex:
            if self._current is not None:
                raise LockHeld(self._current.describe())
            current = Current(request.command, request.started_by or "?", started)
            self._current = current
            self._idle.clear()

        def on_start(run_id: str) -> None:
            current.run_id = run_id
            started.set_result(run_id)

        request.on_start = on_start
        self._thread = threading.Thread(
            target=self._run, args=(request, started), name="run", daemon=True
        )
        self._thread.start()
        return started

    def _run(self, request: RunRequest, started: Future[str]) -> None:
        try:
            execute(self._settings, request, say=self._say)
            if not started.done():  # cannot happen: API runs are never dry runs
                started.set_exception(RuntimeError("the run recorded no audit row"))
            LOG.info("run %s finished: success", self._current and self._current.run_id)
        except BaseException as exc:  # recorded in the audit; the service goes on
            if not started.done():
                started.set_exception(exc)
            else:
                first = (str(exc).strip().splitlines() or [""])[0]
                LOG.warning("run %s failed: %s", self._current and self._current.run_id, first)
        finally:
            with self._mutex:
                self._current = None
                self._idle.set()

    def holder(self, timeout: float = 10.0) -> str:
        """Who holds the lock here, naming its run once it has its audit row.

        A request refused while the run is being started waits (up to `timeout` seconds)
        for its run id, so that the refusal can name the run to follow.
        """
        current = self._current
        if current is None:
            return "another run held the lock and has just ended: try again"
        wait([current.started], timeout)
        return current.describe()

    def wait_idle(self, timeout: float) -> bool:
        """Wait up to `timeout` seconds for the running run to end; True when none runs."""
        return self._idle.wait(timeout)
