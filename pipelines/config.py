"""Settings from the environment (and a `.env` file in the working directory).

The variable names are the public contract shared with Atlas's own app; this module is
the only place that reads them.
"""

from __future__ import annotations

import logging
import os
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import quote, urlencode

from sqlalchemy.engine import URL, make_url

from pipelines.errors import ConfigError
from pipelines.retry import RetryPolicy

log = logging.getLogger("pipelines.config")
# a DNS name or an IP address (IPv6 without brackets), as a Host header names it
_HOST_NAME = re.compile(r"[a-z0-9]([a-z0-9.:-]{0,252}[a-z0-9])?")

# always fullmatch: with match, "$" also matches before a trailing newline
_IDENTIFIER = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_PREFIX = re.compile(r"[A-Za-z0-9_]*")
_ZONE = re.compile(r"[A-Za-z][A-Za-z0-9_+/-]{0,63}")


PROCESS_ONLY = frozenset({"DBT_PROFILES_DIR", "DBT_PROJECT_DIR"})
"""Variables only the process environment may set, never a ``.env`` file."""

KIMAI_SSL_MODES = ("disabled", "required", "verify_ca", "verify_identity")
"""MySQL's ``--ssl-mode`` values, which connectorx's reader takes as they are (not
``preferred``: it falls back to plaintext, and PyMySQL cannot do it)."""

_KIMAI_URL_PARAMS = {"charset", "ssl_mode", "ssl_ca"}

BI_ROLE_SCOPES = ("replica", "marts")
"""``ATLAS_BI_ROLE_SCOPE``: ``replica`` lets the BI role read the vw_* views and the
replica_kimai_* tables (users' e-mail addresses and roles included); ``marts`` the vw_*
views only (docs/metabase.md)."""


@dataclass(frozen=True)
class KimaiTLS:
    """TLS to Kimai's server, one setting for both readers (PyMySQL and connectorx)."""

    mode: str
    """One of `KIMAI_SSL_MODES`."""
    ca: Path | None = None
    """Certificate authority file, for ``verify_ca`` and ``verify_identity``."""

    @property
    def required(self) -> bool:
        """Whether a connection without TLS must fail (never fall back to plaintext)."""
        return self.mode != "disabled"

    def pymysql_args(self) -> dict[str, Any]:
        """PyMySQL's ``connect`` arguments for this mode."""
        if self.mode == "disabled":
            return {"ssl_disabled": True}
        verify = self.mode in {"verify_ca", "verify_identity"}
        ssl: dict[str, Any] = {"check_hostname": self.mode == "verify_identity"}
        if verify:
            ssl["ca"] = str(self.ca)
        return {"ssl": ssl}

    def connectorx_query(self) -> dict[str, str]:
        """The URL parameters of connectorx for this mode."""
        query = {"ssl-mode": self.mode}
        if self.ca is not None:
            query["ssl-ca"] = str(self.ca)
        return query


@dataclass(frozen=True)
class Limits:
    """Time limits, in seconds, so that nothing a run waits for can hang it (0: none).

    The defaults fit the biggest runs: a first load of 5M timesheets takes minutes, and the
    longest single statements measured at 1M timesheets took about 30 s (the bulk rewrite's
    ``INSERT … SELECT``, the dbt build's biggest models), so 30 minutes stops only a
    statement that is stuck. A lock wait is never needed for long: the run's reads and
    writes do not conflict with BI's or Kimai's own, so two minutes means something holds
    a table (a migration, a manual ``LOCK TABLE``) and the next scheduled run should try.
    """

    kimai_statement: float = 1800
    """``KIMAI_DB_STATEMENT_TIMEOUT_SECONDS``: MariaDB's ``max_statement_time`` (MySQL's
    ``max_execution_time``) of every Kimai session."""
    kimai_lock_wait: int = 120
    """``KIMAI_DB_LOCK_WAIT_TIMEOUT_SECONDS``: ``lock_wait_timeout`` (table metadata locks,
    e.g. behind a Kimai migration's ``ALTER TABLE`` or a ``LOCK TABLES``)."""
    atlas_statement: float = 1800
    """``ATLAS_DB_STATEMENT_TIMEOUT_SECONDS``: PostgreSQL's ``statement_timeout``."""
    atlas_lock: float = 120
    """``ATLAS_DB_LOCK_TIMEOUT_SECONDS``: PostgreSQL's ``lock_timeout``."""
    run: float = 86400
    """``ATLAS_RUN_TIMEOUT_SECONDS``: the whole run's deadline (`pipelines.deadline`)."""

    def atlas_options(self) -> str:
        """The libpq ``options`` that set the Atlas DB limits at connection start.

        Startup options rather than ``SET``: every client takes them (psycopg2, ADBC, dlt,
        dbt through ``PGOPTIONS``), and a ``RESET ALL`` or a rollback cannot undo them.
        No spaces: dlt renders its URL for ADBC with + for a space, which libpq does not
        decode; libpq and the server split options at any white space, a tab included.
        """
        parts = []
        if self.atlas_statement > 0:
            parts.append(f"-cstatement_timeout={int(self.atlas_statement * 1000)}")
        if self.atlas_lock > 0:
            parts.append(f"-clock_timeout={int(self.atlas_lock * 1000)}")
        return "\t".join(parts)

    def kimai_session_sql(self, mariadb: bool) -> list[str]:
        """``SET SESSION`` statements of Kimai's limits, capped by the run's deadline.

        Args:
            mariadb: MariaDB (``max_statement_time``, seconds); otherwise MySQL
                (``max_execution_time``, milliseconds, SELECT only: all Kimai sees).

        Raises:
            RunTimedOut: The run's deadline has passed: no statement may start.

        """
        from pipelines.deadline import cap

        statement = cap(self.kimai_statement)
        sql = []
        if statement > 0:
            if mariadb:
                sql.append(f"SET SESSION max_statement_time = {statement:.3f}")
            else:
                sql.append(f"SET SESSION max_execution_time = {max(1, int(statement * 1000))}")
        lock_wait = cap(self.kimai_lock_wait) if self.kimai_lock_wait > 0 else 0
        if lock_wait > 0:
            # whole seconds; at least 1 (0 would not wait at all)
            sql.append(f"SET SESSION lock_wait_timeout = {max(1, int(lock_wait))}")
        return sql


@dataclass(frozen=True)
class Settings:
    """Validated runtime settings. Build with `load_settings`."""

    kimai_url: URL
    kimai_table_prefix: str
    atlas_url: URL
    replica_schema: str
    analytics_schema: str
    overlay_schema: str
    bi_role: str | None
    overlap_seconds: int
    mass_delete_max_share: float
    reconcile_every_run: bool
    state_dir: Path | None
    timesheet_facts_materialization: str = "view"
    timesheet_facts_check: str = "auto"
    report_timezone: str = "UTC"
    """``ATLAS_REPORT_TIMEZONE``: the zone of the "viewer" of Kimai's screens (an IANA name)."""
    bi_role_scope: str = "replica"
    """``ATLAS_BI_ROLE_SCOPE``: what ``ATLAS_BI_ROLE`` may read, one of `BI_ROLE_SCOPES`."""
    key_digests: bool = False
    pipeline_name: str = field(default="")
    retry: RetryPolicy = field(default_factory=RetryPolicy)
    dbt_project_dir: Path | None = None
    """``DBT_PROJECT_DIR``: another dbt project than the one shipped with the product."""
    dbt_profiles_dir: Path | None = None
    """``DBT_PROFILES_DIR``: your own ``profiles.yml`` instead of ``profiles.example.yml``."""
    api_tokens_file: Path | None = None
    """``ATLAS_API_TOKENS_FILE``: the HTTP service's hashed tokens (`pipelines.serve.tokens`)."""
    kimai_tls: KimaiTLS | None = None
    """``KIMAI_DB_SSL_MODE`` / ``KIMAI_DB_SSL_CA`` (or ``ssl_mode`` / ``ssl_ca`` in the URL)."""
    api_allowed_hosts: tuple[str, ...] = ()
    """``ATLAS_API_ALLOWED_HOSTS``: more names the service answers to (its ``Host`` header)."""
    limits: Limits = field(default_factory=lambda: Limits())
    """Statement, lock wait and run time limits (`Limits`)."""
    follow_interval_seconds: float = 30.0
    """``ATLAS_FOLLOW_INTERVAL_SECONDS``: the follower's time between tick starts."""
    delete_max_lag_seconds: float = 300.0
    """``ATLAS_DELETE_MAX_LAG_SECONDS``: the follower compares every key range this often."""
    atlas_ssl_mode: str | None = None
    """``ATLAS_DB_SSL_MODE``: libpq's ``sslmode`` (``ATLAS_DB_URL``'s own ``sslmode`` wins)."""
    atlas_ssl_root_cert: Path | None = None
    """``ATLAS_DB_SSL_ROOT_CERT``: libpq's ``sslrootcert``, the CA for ``verify-full``."""
    build_max_age_hours: float = 24.0
    """``ATLAS_BUILD_MAX_AGE_HOURS``: a scheduled run builds once the last build is older,
    even when nothing changed (`pipelines.build_gate`); 0 builds every time."""
    full_audit_hours: float = 24.0
    """``ATLAS_FULL_AUDIT_HOURS``: a scheduled build whose replica alone changed is a delta
    build (`pipelines.build_gate`) until the last full audit is older; 0: always full."""
    kimai_binlog: bool = False
    """``KIMAI_BINLOG``: the follower reads Kimai's ROW binlog for changed keys
    (`pipelines.adapters.binlog`) instead of sweeping key ranges."""
    kimai_binlog_server_id: int = 0
    """``KIMAI_BINLOG_SERVER_ID``: the follower's replication client id (0: derived from
    the host name, see `binlog_server_id`)."""

    @property
    def kimai_dialect(self) -> str:
        """``mysql`` or ``sqlite``."""
        return self.kimai_url.get_backend_name()

    @property
    def atlas_dialect(self) -> str:
        """``postgresql`` or ``duckdb``."""
        return self.atlas_url.get_backend_name()

    def kimai_connectorx_url(self) -> str:
        """Kimai's URL in the form connectorx expects (with its TLS parameters)."""
        url = connectorx_url(self.kimai_url)
        if self.kimai_tls is None:
            return url
        return f"{url}?{urlencode(self.kimai_tls.connectorx_query())}"

    def atlas_connectorx_url(self) -> str:
        """Atlas DB's URL in the form connectorx and ADBC expect (PostgreSQL only)."""
        return connectorx_url(self.atlas_session_url())

    def atlas_session_url(self) -> URL:
        """Atlas DB's URL with every connection parameter of `atlas_libpq_params`."""
        return self.atlas_url.set(query=self.atlas_libpq_params())

    def atlas_libpq_params(self) -> dict[str, str]:
        """Connection parameters: ``ATLAS_DB_URL``'s query and the session limits.

        The query gives ``sslmode``, ``sslrootcert`` and the like; the limits are added to
        ``options``. Every connection to Atlas DB takes them: psycopg2, ADBC and connectorx
        through their URL or keywords, dlt through its credentials, dbt through its profile
        and ``PGOPTIONS``.
        """
        params = {k: v if isinstance(v, str) else v[-1] for k, v in self.atlas_url.query.items()}
        if self.atlas_dialect != "postgresql":
            return params
        if self.atlas_ssl_mode is not None:
            params.setdefault("sslmode", self.atlas_ssl_mode)
        if self.atlas_ssl_root_cert is not None:
            params.setdefault("sslrootcert", str(self.atlas_ssl_root_cert))
        limits = self.limits.atlas_options()
        if limits:
            # after the URL's own options: the later setting of a parameter wins
            params["options"] = f"{params.get('options', '')}\t{limits}".strip()
        return params

    def atlas_connect_args(self, application_name: str) -> dict[str, Any]:
        """Keyword arguments of ``psycopg2.connect`` for Atlas DB (one place for all of them).

        Args:
            application_name: Shown in ``pg_stat_activity`` (at most 63 characters kept).

        """
        url = self.atlas_url
        params = self.atlas_libpq_params()
        return {
            **params,
            "host": url.host,
            "port": url.port or 5432,
            "user": url.username,
            "password": url.password or params.get("password") or None,
            "dbname": url.database,
            "connect_timeout": 10,
            "application_name": application_name[:63],
            # a dead peer (server restart, dropped proxy connection) is noticed within ~1 min
            "keepalives": 1,
            "keepalives_idle": 30,
            "keepalives_interval": 10,
            "keepalives_count": 3,
        }

    def tls_warnings(self) -> list[str]:
        """Warnings for a remote Kimai or Atlas DB reached without a TLS mode chosen.

        Credentials and every row cross the network; without a mode, PyMySQL does not ask
        for TLS and libpq's ``prefer`` neither verifies the server nor refuses plaintext.
        Choosing a mode, ``disabled`` / ``disable`` included, is a deliberate decision and
        silences the warning.
        """
        warnings = []
        if self.kimai_dialect != "sqlite" and self.kimai_tls is None:
            warnings += tls_warning(
                "Kimai", self.kimai_url.host, "KIMAI_DB_SSL_MODE", "verify_identity"
            )
        if self.atlas_dialect == "postgresql" and "sslmode" not in self.atlas_libpq_params():
            warnings += tls_warning(
                "Atlas DB", self.atlas_url.host, "ATLAS_DB_SSL_MODE", "verify-full"
            )
        return warnings

    def require_kimai_file(self) -> None:
        """Refuse a SQLite Kimai whose file does not exist (exit 2, naming the file).

        SQLite would create an empty database in its place, which looks like a Kimai
        whose every table was dropped.
        """
        if self.kimai_dialect != "sqlite":
            return
        path = self.kimai_url.database or ""
        if not Path(path).is_file():
            raise ConfigError(f"no Kimai SQLite file at {path}: check KIMAI_DB_URL")

    def require_atlas_file(self) -> None:
        """Refuse a DuckDB Atlas DB whose file does not exist (exit 2, naming the file).

        For the commands that only read the replica or build on it (``status``,
        ``transform``, ``serve``, ``dbt``): DuckDB would create an empty file at a mistyped
        path and they would report or build on nothing. Only the commands that write the
        replica (the scheduled run, ``sync``, ``reconcile``, the demo) create the file, as
        their first load.
        """
        if self.atlas_dialect != "duckdb":
            return
        path = self.atlas_url.database or ""
        if not Path(path).is_file():
            raise ConfigError(f"no DuckDB file at {path}: check ATLAS_DB_URL (a sync creates it)")

    def describe_kimai(self) -> str:
        """Kimai's location without the password, for messages."""
        return self.kimai_url.set(query={}).render_as_string(hide_password=True)

    def describe_atlas(self) -> str:
        """Atlas DB's location without the password (also one given as a URL parameter)."""
        query = {
            k: "***" if "password" in k.lower() else v for k, v in self.atlas_url.query.items()
        }
        return self.atlas_url.set(query=query).render_as_string(hide_password=True)


def is_local_host(host: str | None) -> bool:
    """Whether `host` is this machine: loopback, ``localhost`` or a Unix socket directory."""
    import ipaddress

    if not host or host.startswith("/") or host.lower() in {"localhost", "localhost."}:
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False  # a name: another machine, as far as the settings tell


def tls_warning(what: str, host: str | None, variable: str, verified: str) -> list[str]:
    """The warning for `what` at `host` without a TLS mode (none for a local host)."""
    if is_local_host(host):
        return []
    return [
        f"{what} at {host} is reached without a TLS mode: set {variable}={verified} (the"
        f" credentials and every row cross the network), or {variable}="
        f"{'disabled' if variable.startswith('KIMAI') else 'disable'} to accept plaintext"
    ]


def connectorx_url(url: URL) -> str:
    """Render a SQLAlchemy URL for connectorx (no driver suffix, password percent-encoded)."""
    backend = url.get_backend_name()
    if backend == "sqlite":
        return f"sqlite://{Path(url.database or '').resolve()}"
    scheme = {"mysql": "mysql", "postgresql": "postgresql"}.get(backend)
    if scheme is None:
        raise ConfigError(f"no bulk reader for {backend} URLs")
    user = quote(url.username or "", safe="")
    password = quote(url.password or "", safe="")
    auth = f"{user}:{password}@" if password else f"{user}@"
    port = f":{url.port}" if url.port else ""
    query = ""
    if scheme == "postgresql" and url.query:
        # TLS and other libpq parameters (the MySQL reader takes its own from the driver)
        query = "?" + urlencode(
            [(k, v) for k, vs in url.query.items() for v in ([vs] if isinstance(vs, str) else vs)],
            # %20, not +: libpq does not read + as a space (options="-c a=1 -c b=2")
            quote_via=quote,
        )
    return f"{scheme}://{auth}{url.host or '127.0.0.1'}{port}/{url.database or ''}{query}"


def _environment(dotenv: bool) -> dict[str, str]:
    """The process environment, over `.env` in the working directory when `dotenv`."""
    if not dotenv:
        return dict(os.environ)
    from dotenv import dotenv_values

    file_values = {k: v for k, v in dotenv_values(".env").items() if v is not None}
    for name in sorted(PROCESS_ONLY & set(file_values)):
        # a .env in whatever directory a run starts in must not choose the dbt profile or
        # project: either can send Atlas DB's password to another host
        log.warning("%s in .env is ignored: set it in the environment", name)
        del file_values[name]
    return {**file_values, **os.environ}


def _choice(env: Mapping[str, str], name: str, choices: Sequence[str]) -> str:
    """One of `choices` (the first when the variable is unset or empty)."""
    value = _env(env, name, choices[0]) or choices[0]
    if value not in choices:
        allowed = f"{', '.join(choices[:-1])} or {choices[-1]}"
        raise ConfigError(f"{name} must be {allowed}, got {value!r}")
    return value


def _env(env: Mapping[str, str], name: str, default: str | None = None) -> str | None:
    value = env.get(name)
    if value is None or value == "":
        return default
    return value


def _int(env: Mapping[str, str], name: str, default: int, minimum: int = 0) -> int:
    raw = _env(env, name, str(default))
    try:
        value = int(raw)  # type: ignore[arg-type]
    except ValueError:
        raise ConfigError(f"{name} must be an integer, got {raw!r}") from None
    if value < minimum:
        raise ConfigError(f"{name} must be at least {minimum}, got {value}")
    return value


def _float(env: Mapping[str, str], name: str, default: float, low: float, high: float) -> float:
    raw = _env(env, name, str(default))
    try:
        value = float(raw)  # type: ignore[arg-type]
    except ValueError:
        raise ConfigError(f"{name} must be a number, got {raw!r}") from None
    if not low <= value <= high:
        raise ConfigError(f"{name} must be between {low:g} and {high:g}, got {value:g}")
    return value


def _path(env: Mapping[str, str], name: str) -> Path | None:
    raw = _env(env, name)
    return Path(raw).expanduser() if raw else None


def _identifier(env: Mapping[str, str], name: str, default: str, lower_case: bool = False) -> str:
    value = _env(env, name, default) or default
    if not _IDENTIFIER.fullmatch(value):
        raise ConfigError(
            f"{name} must be a plain SQL identifier (letters, digits, _), got {value!r}"
        )
    if lower_case and value != value.lower():
        # dlt lower-cases dataset names while dbt and the sync quote them as given: the
        # replica would split between two schemas and every run would load everything again
        raise ConfigError(f"{name} must be lower case, got {value!r} (use {value.lower()!r})")
    return value


def _bool(env: Mapping[str, str], name: str, default: bool) -> bool:
    raw = (_env(env, name) or "").strip().lower()
    if not raw:
        return default
    if raw in {"1", "true", "yes", "on"}:
        return True
    if raw in {"0", "false", "no", "off"}:
        return False
    raise ConfigError(f"{name} must be true or false, got {raw!r}")


def _url(env: Mapping[str, str], name: str) -> URL | None:
    raw = _env(env, name)
    if raw is None:
        return None
    try:
        return make_url(raw)
    except Exception:
        raise ConfigError(f"{name} is not a valid database URL") from None


def _kimai_url(env: Mapping[str, str]) -> URL:
    url = _url(env, "KIMAI_DB_URL")
    if url is None:
        url = URL.create(
            "mysql+pymysql",
            username=_env(env, "KIMAI_DB_USER", "root"),
            password=_env(env, "KIMAI_DB_PASSWORD"),
            host=_env(env, "KIMAI_DB_HOST", "127.0.0.1"),
            port=_int(env, "KIMAI_DB_PORT", 3306, minimum=1),
            database=_env(env, "KIMAI_DB_DATABASE", "kimai"),
        )
    backend = url.get_backend_name()
    if backend not in {"mysql", "mariadb", "sqlite"}:
        raise ConfigError(f"KIMAI_DB_URL must point at MySQL/MariaDB or SQLite, got {backend}")
    if backend == "mariadb" or backend == "mysql" and url.get_driver_name() != "pymysql":
        url = url.set(drivername="mysql+pymysql")
    if backend == "mysql" or backend == "mariadb":
        unknown = sorted(set(url.query) - _KIMAI_URL_PARAMS)
        if unknown:
            raise ConfigError(
                f"KIMAI_DB_URL parameter {', '.join(unknown)} is not supported (both readers"
                " take only charset, ssl_mode and ssl_ca)"
            )
        url = url.set(query={}).update_query_dict({"charset": "utf8mb4"})
    return url


def _kimai_tls(env: Mapping[str, str]) -> KimaiTLS | None:
    url = _url(env, "KIMAI_DB_URL")
    query = dict(url.query) if url is not None else {}
    mode = _env(env, "KIMAI_DB_SSL_MODE") or query.get("ssl_mode")
    ca = _env(env, "KIMAI_DB_SSL_CA") or query.get("ssl_ca")
    if mode is None and ca is None:
        return None
    if isinstance(mode, tuple) or isinstance(ca, tuple):
        raise ConfigError("KIMAI_DB_URL gives ssl_mode or ssl_ca more than once")
    mode = mode or "verify_ca"
    if mode not in KIMAI_SSL_MODES:
        raise ConfigError(
            f"KIMAI_DB_SSL_MODE must be one of {', '.join(KIMAI_SSL_MODES)}, got {mode!r}"
        )
    if mode in {"verify_ca", "verify_identity"} and ca is None:
        raise ConfigError(f"KIMAI_DB_SSL_MODE={mode} needs KIMAI_DB_SSL_CA (the CA file)")
    if ca is not None and not Path(ca).expanduser().is_file():
        raise ConfigError(f"KIMAI_DB_SSL_CA: no file at {ca}")
    return KimaiTLS(mode, Path(ca).expanduser() if ca else None)


ATLAS_SSL_MODES = ("disable", "allow", "prefer", "require", "verify-ca", "verify-full")
"""libpq's ``sslmode`` values."""


def _atlas_ssl_mode(env: Mapping[str, str]) -> str | None:
    mode = _env(env, "ATLAS_DB_SSL_MODE")
    if mode is not None and mode not in ATLAS_SSL_MODES:
        raise ConfigError(
            f"ATLAS_DB_SSL_MODE must be one of {', '.join(ATLAS_SSL_MODES)}, got {mode!r}"
        )
    return mode


def _atlas_url(env: Mapping[str, str]) -> URL:
    url = _url(env, "ATLAS_DB_URL")
    if url is None:
        url = URL.create(
            "postgresql",
            username=_env(env, "ATLAS_DB_USER", "postgres"),
            password=_env(env, "ATLAS_DB_PASSWORD"),
            host=_env(env, "ATLAS_DB_HOST", "127.0.0.1"),
            port=_int(env, "ATLAS_DB_PORT", 5432, minimum=1),
            database=_env(env, "ATLAS_DB_DATABASE", "atlas"),
        )
    backend = url.get_backend_name()
    if backend not in {"postgresql", "duckdb"}:
        raise ConfigError(f"ATLAS_DB_URL must point at PostgreSQL or DuckDB, got {backend}")
    if backend == "postgresql":
        url = url.set(drivername="postgresql")
    elif not url.database or url.database == ":memory:":
        raise ConfigError("ATLAS_DB_URL must name a DuckDB file, e.g. duckdb:///atlas.duckdb")
    else:
        # dlt resolves a relative DuckDB path against its own working directory, not the
        # process's: one absolute path keeps dlt, dbt, the readers and the lock on one file
        url = url.set(database=str(Path(url.database).expanduser().resolve()))
    return url


def load_settings(env: Mapping[str, str] | None = None, dotenv: bool = True) -> Settings:
    """Read and validate the settings.

    Args:
        env: Variables to read; the process environment when omitted.
        dotenv: Also read `.env` in the working directory (process variables win).

    Returns:
        The validated settings.

    Raises:
        ConfigError: A variable is malformed; the message names it.

    """
    if env is None:
        env = _environment(dotenv)
    prefix = _env(env, "KIMAI_TABLE_PREFIX", "kimai2_") or ""
    if not _PREFIX.fullmatch(prefix):
        raise ConfigError(f"KIMAI_TABLE_PREFIX may hold letters, digits and _ only, got {prefix!r}")
    share = _float(env, "ATLAS_MASS_DELETE_MAX_SHARE", 0.2, 0, 1)
    bi_role = _env(env, "ATLAS_BI_ROLE")
    if bi_role is not None and not _IDENTIFIER.fullmatch(bi_role):
        raise ConfigError(f"ATLAS_BI_ROLE must be a plain SQL identifier, got {bi_role!r}")
    replica_schema = _identifier(env, "ATLAS_REPLICA_SCHEMA", "kimai_replica", lower_case=True)
    return Settings(
        report_timezone=_time_zone(env, "ATLAS_REPORT_TIMEZONE", "UTC"),
        kimai_url=_kimai_url(env),
        kimai_table_prefix=prefix,
        atlas_url=_atlas_url(env),
        replica_schema=replica_schema,
        analytics_schema=_identifier(env, "ATLAS_ANALYTICS_SCHEMA", "analytics", lower_case=True),
        overlay_schema=_identifier(env, "ATLAS_OVERLAY_SCHEMA", "public"),
        bi_role=bi_role,
        bi_role_scope=_choice(env, "ATLAS_BI_ROLE_SCOPE", BI_ROLE_SCOPES),
        overlap_seconds=_int(env, "KIMAI_SYNC_OVERLAP_SECONDS", 300),
        mass_delete_max_share=share,
        reconcile_every_run=_bool(env, "ATLAS_RECONCILE_EVERY_RUN", False),
        state_dir=_path(env, "ATLAS_SYNC_STATE_DIR"),
        timesheet_facts_materialization=_choice(
            env, "ATLAS_TIMESHEET_FACTS_MATERIALIZATION", ("view", "table_incremental")
        ),
        timesheet_facts_check=_choice(
            env, "ATLAS_TIMESHEET_FACTS_CHECK", ("auto", "full", "sample")
        ),
        key_digests=_bool(env, "KIMAI_KEY_DIGESTS", False),
        pipeline_name=f"kimai_atlas_{replica_schema}",
        retry=RetryPolicy(
            attempts=_int(env, "ATLAS_RETRY_ATTEMPTS", 5, minimum=1),
            base_seconds=_float(env, "ATLAS_RETRY_BASE_SECONDS", 1.0, 0, 3600),
        ),
        dbt_project_dir=_path(env, "DBT_PROJECT_DIR"),
        dbt_profiles_dir=_path(env, "DBT_PROFILES_DIR"),
        api_tokens_file=_tokens_file(env),
        api_allowed_hosts=_host_names(env, "ATLAS_API_ALLOWED_HOSTS"),
        kimai_tls=_kimai_tls(env),
        atlas_ssl_mode=_atlas_ssl_mode(env),
        atlas_ssl_root_cert=_path(env, "ATLAS_DB_SSL_ROOT_CERT"),
        follow_interval_seconds=_float(env, "ATLAS_FOLLOW_INTERVAL_SECONDS", 30.0, 0.1, 3600),
        delete_max_lag_seconds=_float(env, "ATLAS_DELETE_MAX_LAG_SECONDS", 300.0, 1, 86400),
        build_max_age_hours=_float(env, "ATLAS_BUILD_MAX_AGE_HOURS", 24, 0, 1e6),
        full_audit_hours=_float(env, "ATLAS_FULL_AUDIT_HOURS", 24, 0, 1e6),
        kimai_binlog=_bool(env, "KIMAI_BINLOG", False),
        kimai_binlog_server_id=_int(env, "KIMAI_BINLOG_SERVER_ID", 0),
        limits=Limits(
            kimai_statement=_float(env, "KIMAI_DB_STATEMENT_TIMEOUT_SECONDS", 1800, 0, 1e6),
            kimai_lock_wait=_int(env, "KIMAI_DB_LOCK_WAIT_TIMEOUT_SECONDS", 120),
            atlas_statement=_float(env, "ATLAS_DB_STATEMENT_TIMEOUT_SECONDS", 1800, 0, 1e6),
            atlas_lock=_float(env, "ATLAS_DB_LOCK_TIMEOUT_SECONDS", 120, 0, 1e6),
            run=_float(env, "ATLAS_RUN_TIMEOUT_SECONDS", 86400, 0, 1e7),
        ),
    )


def _time_zone(env: Mapping[str, str], name: str, default: str) -> str:
    """An IANA time zone name that Python's zone database knows (Atlas DB is asked too)."""
    from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

    value = _env(env, name, default) or default
    if not _ZONE.fullmatch(value):
        raise ConfigError(f"{name} must be an IANA time zone name (Europe/Berlin), got {value!r}")
    try:
        ZoneInfo(value)
    except (ZoneInfoNotFoundError, ValueError):
        raise ConfigError(
            f"{name}: unknown time zone {value!r} (an IANA name such as Europe/Berlin)"
        ) from None
    return value


def _tokens_file(env: Mapping[str, str]) -> Path | None:
    path = _path(env, "ATLAS_API_TOKENS_FILE")
    if path is not None and path.is_dir():
        raise ConfigError(f"ATLAS_API_TOKENS_FILE must name a file, {path} is a directory")
    return path


def _host_names(env: Mapping[str, str], name: str) -> tuple[str, ...]:
    """Comma-separated host names, lower case, without a port."""
    names = []
    for raw in (_env(env, name) or "").split(","):
        value = raw.strip().lower().removesuffix(".")
        if not value:
            continue
        if value.startswith("[") and value.endswith("]"):
            value = value[1:-1]  # an IPv6 address as a URL writes it
        if not _HOST_NAME.fullmatch(value):
            raise ConfigError(
                f"{name} holds host names separated by commas (no port, no scheme),"
                f" got {raw.strip()!r}"
            )
        names.append(value)
    return tuple(names)
