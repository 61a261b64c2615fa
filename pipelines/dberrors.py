"""Classify database driver errors: bad configuration, transient, or other failure.

Drivers (PyMySQL, psycopg2, connectorx, ADBC, dlt wrapping them) report the same events in
different shapes, so classification looks at error codes where there are any and at the
message text otherwise.
"""

from __future__ import annotations

import re
from typing import Literal

from pipelines.errors import ConfigError, DatabaseError, PipelineError, RunTimedOut

Kind = Literal["config", "transient", "failure"]

# MySQL/MariaDB server and client error numbers
_MYSQL_CONFIG = {1044, 1045, 1049, 1142, 1143, 1146, 1698}
_MYSQL_TRANSIENT = {1040, 1053, 1213, 1927, 2002, 2003, 2006, 2013, 2055}
# a statement or lock wait that ran into its limit (KIMAI_DB_*_TIMEOUT_SECONDS): 1969
# max_statement_time (MariaDB), 3024 max_execution_time (MySQL), 1205 lock_wait_timeout
_MYSQL_TIMEOUT = {1205, 1969, 3024}

# PostgreSQL SQLSTATEs
_PG_CONFIG = {"28P01", "28000", "3D000", "42501", "42P01"}
_PG_TRANSIENT_PREFIXES = ("08", "57P", "53")
_PG_TRANSIENT = {"40001", "40P01"}
# query_canceled (statement_timeout, or the run's deadline cancelling it), lock_not_available
_PG_TIMEOUT = {"57014", "55P03"}

_CONFIG_TEXT = (
    "access denied",
    "authentication failed",
    "unknown database",
    "no password supplied",
    "command denied",
)
_MISSING_OBJECT = re.compile(r'(database|role|relation|schema) "[^"]*" does not exist')
# TLS refused or unverifiable: retrying cannot help, and the driver's codes (MySQL's 2003
# "can't connect") would call it transient
_TLS_TEXT = (
    "certificate verify failed",
    "ssl is required",
    "did not agree to tls",
    "no encryption",
)
# A timeout is not retried: the same statement would wait as long again on whatever holds
# it, and retries would stretch one stuck run to several times its limits. The next
# scheduled run tries again. Text for the drivers without codes (connectorx, ADBC).
_TIMEOUT_TEXT = (
    "max_statement_time exceeded",
    "maximum statement execution time exceeded",
    "lock wait timeout exceeded",
    "canceling statement due to statement timeout",
    "canceling statement due to lock timeout",
    "canceling statement due to user request",
)
_TRANSIENT_TEXT = (
    "connection refused",
    "can't connect",
    "could not connect",
    "server has gone away",
    "lost connection",
    "server closed the connection",
    "terminating connection",
    "connection reset",
    "broken pipe",
    "timed out",
    "timeout",
    "too many connections",
    "deadlock",
    "the database system is starting up",
    "the database system is shutting down",
    "the database system is in recovery mode",
    "connection already closed",
    "connection was killed",
    "query execution was interrupted",
    "eof",
    "bytes remaining on stream",
    "codecerror",
    "io error",
    "unexpected end of stream",
)


def root_cause(exc: BaseException) -> BaseException:
    """Follow ``__cause__`` (and SQLAlchemy's ``orig``) to the original driver error."""
    seen = set()
    while id(exc) not in seen:
        seen.add(id(exc))
        nxt = exc.__cause__ or getattr(exc, "orig", None)
        if not isinstance(nxt, BaseException):
            break
        exc = nxt
    return exc


def pipeline_error_in(exc: BaseException) -> PipelineError | None:
    """The first of the product's own errors in `exc`'s cause chain (dlt wraps them)."""
    seen = set()
    cur: BaseException | None = exc
    while cur is not None and id(cur) not in seen:
        if isinstance(cur, PipelineError):
            return cur
        seen.add(id(cur))
        cur = cur.__cause__ or cur.__context__
    return None


def is_fatal_signal(exc: BaseException) -> bool:
    """Interrupts and interpreter exits, which are never retried or wrapped.

    Rust extensions (connectorx) raise panics as a BaseException subclass, so callers that
    retry catch BaseException and let only these through.
    """
    return isinstance(exc, (KeyboardInterrupt, SystemExit, GeneratorExit))


def classify(exc: BaseException) -> Kind:
    """Tell whether an error is bad configuration, worth retrying, or another failure."""
    chain: list[BaseException] = []
    cur: BaseException | None = exc
    while cur is not None and cur not in chain:
        chain.append(cur)
        cur = cur.__cause__ or getattr(cur, "orig", None) or cur.__context__
        if not isinstance(cur, BaseException):
            cur = None
    text = " ".join(f"{type(e).__name__}: {e}" for e in chain).lower()
    if any(t in text for t in _TLS_TEXT) or is_timeout(exc):
        return "failure"
    for e in chain:
        args = getattr(e, "args", ())
        if args and isinstance(args[0], int):
            if args[0] in _MYSQL_CONFIG:
                return "config"
            if args[0] in _MYSQL_TRANSIENT:
                return "transient"
        code = getattr(e, "pgcode", None) or getattr(e, "sqlstate", None)
        if isinstance(code, str) and code:
            if code in _PG_CONFIG:
                return "config"
            if code in _PG_TRANSIENT or code.startswith(_PG_TRANSIENT_PREFIXES):
                return "transient"
    if any(t in text for t in _CONFIG_TEXT) or _MISSING_OBJECT.search(text):
        return "config"
    if any(t in text for t in _TRANSIENT_TEXT):
        return "transient"
    return "failure"


def is_timeout(exc: BaseException) -> bool:
    """Whether `exc` is a statement or lock wait that ran into its limit (never retried)."""
    chain: list[BaseException] = []
    cur: BaseException | None = exc
    while cur is not None and cur not in chain:
        chain.append(cur)
        if isinstance(cur, RunTimedOut):
            return True
        args = getattr(cur, "args", ())
        if args and isinstance(args[0], int) and args[0] in _MYSQL_TIMEOUT:
            return True
        code = getattr(cur, "pgcode", None) or getattr(cur, "sqlstate", None)
        if isinstance(code, str) and code in _PG_TIMEOUT:
            return True
        nxt = cur.__cause__ or getattr(cur, "orig", None) or cur.__context__
        cur = nxt if isinstance(nxt, BaseException) else None
    text = " ".join(str(e) for e in chain).lower()
    return any(t in text for t in _TIMEOUT_TEXT)


def describe(exc: BaseException) -> str:
    """The first meaningful line of the original driver error, without SQL text or URLs."""
    orig = root_cause(exc)
    args = getattr(orig, "args", ())
    coded = len(args) >= 2 and isinstance(args[0], int)
    text = f"({args[0]}) {args[1]}" if coded else str(orig)
    lines = [ln.strip() for ln in text.strip().splitlines() if ln.strip()]
    return lines[0] if lines else type(orig).__name__


def database_failure(context: str, exc: BaseException) -> PipelineError:
    """Wrap a driver error as the contract's error: bad configuration (2) or database (4)."""
    message = f"{context}: {describe(exc)}"
    return ConfigError(message) if classify(exc) == "config" else DatabaseError(message)
