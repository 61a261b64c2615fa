"""How driver errors are classified and described, without a server: the error objects are
built as the drivers build them (PyMySQL's (code, message) args, psycopg2's pgcode, text
only for connectorx and ADBC)."""

from __future__ import annotations

import psycopg2
import pymysql
import pytest

from pipelines.dberrors import classify, database_failure, describe, pipeline_error_in
from pipelines.errors import ConfigError, DatabaseError, MassDeleteRefused

pytestmark = pytest.mark.unit


class _PgError(psycopg2.OperationalError):
    """psycopg2 errors carry their SQLSTATE in a read-only `pgcode`; this one sets it."""

    def __init__(self, message: str, code: str) -> None:
        super().__init__(message)
        self._code = code

    @property
    def pgcode(self) -> str:  # type: ignore[override]
        return self._code


@pytest.mark.parametrize(
    ("error", "kind"),
    [
        (pymysql.err.OperationalError(1045, "Access denied for user 'x'@'h'"), "config"),
        (pymysql.err.OperationalError(1049, "Unknown database 'kimai'"), "config"),
        (pymysql.err.OperationalError(2013, "Lost connection to server during query"), "transient"),
        (pymysql.err.OperationalError(1213, "Try restarting transaction"), "transient"),
        (pymysql.err.IntegrityError(1062, "Duplicate entry '1' for key 'PRIMARY'"), "failure"),
        (_PgError('password authentication failed for user "x"', "28P01"), "config"),
        (_PgError("terminating connection due to administrator command", "57P01"), "transient"),
        (_PgError("could not serialize access", "40001"), "transient"),
        (_PgError("division by zero", "22012"), "failure"),
        (RuntimeError("Connection refused (os error 111)"), "transient"),
        (RuntimeError('database "atlas" does not exist'), "config"),
        (RuntimeError("Unexpected end of stream"), "transient"),
        (ValueError("cannot cast 'abc' to int"), "failure"),
    ],
)
def test_errors_are_classified_by_code_first_then_by_text(error: Exception, kind: str) -> None:
    assert classify(error) == kind


def test_the_cause_chain_decides_when_the_wrapper_says_nothing() -> None:
    try:
        try:
            raise pymysql.err.OperationalError(2006, "MySQL server has gone away")
        except pymysql.err.OperationalError as inner:
            raise RuntimeError("load step failed") from inner
    except RuntimeError as outer:
        assert classify(outer) == "transient"
        assert describe(outer) == "(2006) MySQL server has gone away"


def test_database_failure_is_a_one_line_config_or_database_error() -> None:
    bad_login = database_failure(
        "connecting to Kimai", pymysql.err.OperationalError(1045, "Access denied\nfor user")
    )
    assert isinstance(bad_login, ConfigError)
    assert str(bad_login) == "connecting to Kimai: (1045) Access denied"
    lost = database_failure("reading Kimai", RuntimeError("\n  Connection reset by peer\nmore"))
    assert isinstance(lost, DatabaseError) and not isinstance(lost, ConfigError)
    assert str(lost) == "reading Kimai: Connection reset by peer"


def test_the_products_own_error_is_found_inside_a_wrapping_error() -> None:
    own = MassDeleteRefused("refusing to delete")
    try:
        try:
            raise own
        except MassDeleteRefused as exc:
            raise RuntimeError("extract step failed") from exc
    except RuntimeError as wrapped:
        assert pipeline_error_in(wrapped) is own
    assert pipeline_error_in(RuntimeError("plain")) is None


@pytest.mark.parametrize(
    "error",
    [
        pymysql.err.OperationalError(
            1969, "Query execution was interrupted (max_statement_time exceeded)"
        ),
        pymysql.err.OperationalError(
            1205, "Lock wait timeout exceeded; try restarting transaction"
        ),
        # connectorx: text only, as a RuntimeError or (streams) a Rust panic
        RuntimeError(
            "MySqlError { ERROR 1969 (70100): Query execution was interrupted"
            " (max_statement_time exceeded) }"
        ),
        RuntimeError(
            "cx writer failed: Source(MySQLError(MySqlError { ERROR 1205 (HY000): Lock wait"
            " timeout exceeded; try restarting transaction }))"
        ),
        _PgError("canceling statement due to statement timeout", "57014"),
        _PgError("canceling statement due to lock timeout", "55P03"),
        # ADBC: text only
        RuntimeError("IO: [libpq] ERROR:  canceling statement due to lock timeout"),
        RuntimeError("IO: [libpq] ERROR:  canceling statement due to user request"),
    ],
)
def test_timeouts_are_failures_and_never_retried(error: Exception) -> None:
    from pipelines.dberrors import is_timeout
    from pipelines.retry import RetryPolicy, with_retries

    assert is_timeout(error)
    assert classify(error) == "failure"
    calls = []

    def fail() -> None:
        calls.append(1)
        raise error

    with pytest.raises(type(error)):
        with_retries(fail, "reading", RetryPolicy(attempts=5, base_seconds=0))
    assert len(calls) == 1  # a retry would wait on the same lock as long again
    assert isinstance(database_failure("reading Kimai failed", error), DatabaseError)
