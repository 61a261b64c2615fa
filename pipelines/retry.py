"""Bounded retries with exponential backoff and jitter for transient database errors.

Only errors `pipelines.dberrors.classify` calls transient are retried (lost connection,
server gone away or restarting, deadlock, too many connections); configuration errors,
timeouts (statement and lock wait limits) and everything else fail at once.
"""

from __future__ import annotations

import logging
import random
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import TypeVar

from pipelines.dberrors import classify, describe, is_fatal_signal

T = TypeVar("T")
log = logging.getLogger("pipelines.retry")

MAX_DELAY_SECONDS = 30.0


@dataclass(frozen=True)
class RetryPolicy:
    """How often and how patiently a database operation is retried.

    Built by `pipelines.config.load_settings` from ``ATLAS_RETRY_ATTEMPTS`` and
    ``ATLAS_RETRY_BASE_SECONDS``.
    """

    attempts: int = 5
    """Tries per operation, the first included."""
    base_seconds: float = 1.0
    """First backoff; it doubles with each retry."""

    def backoff(self, attempt: int) -> float:
        """Delay before retry number `attempt` (1-based): exponential, capped, ±50 % jitter."""
        delay = min(MAX_DELAY_SECONDS, self.base_seconds * 2 ** (attempt - 1))
        return delay * random.uniform(0.5, 1.5)


def with_retries(fn: Callable[[], T], what: str, policy: RetryPolicy) -> T:
    """Call `fn`, retrying transient failures; re-raise the last error otherwise.

    Args:
        fn: The operation; it must be safe to repeat.
        what: Short description for the log line of each retry.
        policy: Tries and backoff.

    """
    tries = policy.attempts
    for attempt in range(1, tries + 1):
        try:
            return fn()
        except BaseException as exc:  # connectorx panics are BaseExceptions
            if is_fatal_signal(exc) or attempt == tries or classify(exc) != "transient":
                raise
            delay = policy.backoff(attempt)
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
