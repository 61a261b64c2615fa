"""Bounded retries with exponential backoff and jitter for transient database errors.

Only errors `pipelines.dberrors.classify` calls transient are retried (lost connection,
server gone away or restarting, deadlock, lock wait timeout, too many connections);
configuration errors and everything else fail at once.
"""

from __future__ import annotations

import logging
import os
import random
import time
from collections.abc import Callable
from typing import TypeVar

from pipelines.dberrors import classify, describe, is_fatal_signal

T = TypeVar("T")
log = logging.getLogger("pipelines.retry")


def attempts() -> int:
    """Tries per operation (``ATLAS_RETRY_ATTEMPTS``, default 5)."""
    return max(1, int(os.environ.get("ATLAS_RETRY_ATTEMPTS", "5") or 5))


def base_delay() -> float:
    """First backoff in seconds (``ATLAS_RETRY_BASE_SECONDS``, default 1; doubles each try)."""
    return max(0.0, float(os.environ.get("ATLAS_RETRY_BASE_SECONDS", "1") or 1))


MAX_DELAY_SECONDS = 30.0


def backoff(attempt: int) -> float:
    """Delay before retry number `attempt` (1-based): exponential, capped, with ±50% jitter."""
    return min(MAX_DELAY_SECONDS, base_delay() * 2 ** (attempt - 1)) * random.uniform(0.5, 1.5)


def with_retries(fn: Callable[[], T], what: str) -> T:
    """Call `fn`, retrying transient failures; re-raise the last error otherwise.

    Args:
        fn: The operation; it must be safe to repeat.
        what: Short description for the log line of each retry.

    """
    tries = attempts()
    for attempt in range(1, tries + 1):
        try:
            return fn()
        except BaseException as exc:  # connectorx panics are BaseExceptions
            if is_fatal_signal(exc) or attempt == tries or classify(exc) != "transient":
                raise
            delay = backoff(attempt)
            log.warning(
                "%s failed (%s); retry %d of %d in %.1f s",
                what,
                describe(exc),
                attempt,
                tries - 1,
                delay,
            )
            time.sleep(delay)
    raise AssertionError("unreachable")
