"""Classify database driver errors: bad configuration, transient, or other failure.

Drivers (PyMySQL, psycopg2, connectorx, ADBC, dlt wrapping them) report the same events in
different shapes, so classification looks at error codes where there are any and at the
message text otherwise.
"""

from __future__ import annotations

import re
from typing import Literal

from pipelines.errors import ConfigError, DatabaseError, PipelineError

Kind = Literal["config", "transient", "failure"]

# MySQL/MariaDB server and client error numbers
_MYSQL_CONFIG = {1044, 1045, 1049, 1142, 1143, 1146, 1698}
_MYSQL_TRANSIENT = {1040, 1053, 1205, 1213, 1927, 2002, 2003, 2006, 2013, 2055}

# PostgreSQL SQLSTATEs
_PG_CONFIG = {"28P01", "28000", "3D000", "42501", "42P01"}
_PG_TRANSIENT_PREFIXES = ("08", "57P", "53")
_PG_TRANSIENT = {"40001", "40P01"}

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
    "lock wait timeout",
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
    if any(t in text for t in _TLS_TEXT):
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
