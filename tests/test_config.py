import time
from pathlib import Path

import pytest

from pipelines.config import load_settings
from pipelines.errors import ConfigError

pytestmark = pytest.mark.unit


def test_defaults_follow_the_contract():
    s = load_settings({})
    assert (
        s.kimai_url.render_as_string()
        == "mysql+pymysql://root@127.0.0.1:3306/kimai?charset=utf8mb4"
    )
    assert s.atlas_url.render_as_string() == "postgresql://postgres@127.0.0.1:5432/atlas"
    assert (s.replica_schema, s.analytics_schema, s.overlay_schema) == (
        "kimai_replica",
        "analytics",
        "public",
    )
    assert s.kimai_table_prefix == "kimai2_"
    assert s.bi_role is None
    assert s.bi_role_scope == "replica"
    assert s.mass_delete_max_share == 0.2


def test_kimai_url_overrides_the_parts_and_passwords_are_encoded_for_connectorx():
    s = load_settings(
        {
            "KIMAI_DB_URL": "mysql://bi:p%40ss%2Fw@db.example:3307/k",
            "KIMAI_DB_HOST": "ignored",
            "ATLAS_DB_PASSWORD": "s3cr:t@",
        }
    )
    assert s.kimai_connectorx_url() == "mysql://bi:p%40ss%2Fw@db.example:3307/k"
    assert s.atlas_connectorx_url() == (
        "postgresql://postgres:s3cr%3At%40@127.0.0.1:5432/atlas"
        "?options=-cstatement_timeout%3D1800000%09-clock_timeout%3D120000"
    )
    assert "s3cr" not in s.describe_atlas() and "p@ss" not in s.describe_kimai()


def test_sqlite_and_duckdb_urls_for_the_embedded_path(tmp_path: Path):
    s = load_settings(
        {
            "KIMAI_DB_URL": f"sqlite:///{tmp_path}/k.sqlite",
            "ATLAS_DB_URL": f"duckdb:///{tmp_path}/a.duckdb",
        }
    )
    assert s.kimai_dialect == "sqlite" and s.atlas_dialect == "duckdb"
    assert s.kimai_connectorx_url() == f"sqlite://{tmp_path}/k.sqlite"


@pytest.mark.parametrize(
    ("env", "message"),
    [
        ({"KIMAI_DB_PORT": "abc"}, "KIMAI_DB_PORT must be an integer"),
        ({"ATLAS_DB_PORT": "0"}, "ATLAS_DB_PORT must be at least 1"),
        (
            {"ATLAS_REPLICA_SCHEMA": "x; drop"},
            "ATLAS_REPLICA_SCHEMA must be a plain SQL identifier",
        ),
        ({"KIMAI_TABLE_PREFIX": "k-"}, "KIMAI_TABLE_PREFIX may hold"),
        ({"ATLAS_MASS_DELETE_MAX_SHARE": "2"}, "between 0 and 1"),
        (
            {"KIMAI_DB_URL": "postgresql://x/y"},
            "KIMAI_DB_URL must point at MySQL/MariaDB or SQLite",
        ),
        ({"ATLAS_DB_URL": "mysql://x/y"}, "ATLAS_DB_URL must point at PostgreSQL or DuckDB"),
        ({"ATLAS_BI_ROLE": "bi role"}, "ATLAS_BI_ROLE must be a plain SQL identifier"),
        ({"ATLAS_BI_ROLE_SCOPE": "all"}, "ATLAS_BI_ROLE_SCOPE must be replica or marts"),
        ({"ATLAS_BI_ROLE_SCOPE": "Marts"}, "ATLAS_BI_ROLE_SCOPE must be replica or marts"),
        ({"ATLAS_RECONCILE_EVERY_RUN": "maybe"}, "must be true or false"),
        ({"KIMAI_KEY_DIGESTS": "sometimes"}, "must be true or false"),
        ({"ATLAS_TIMESHEET_FACTS_MATERIALIZATION": "table"}, "must be view or table_incremental"),
        ({"ATLAS_TIMESHEET_FACTS_CHECK": "some"}, "must be auto, full or sample"),
        ({"ATLAS_RETRY_ATTEMPTS": "many"}, "ATLAS_RETRY_ATTEMPTS must be an integer"),
        ({"ATLAS_RETRY_ATTEMPTS": "0"}, "ATLAS_RETRY_ATTEMPTS must be at least 1"),
        ({"ATLAS_RETRY_BASE_SECONDS": "soon"}, "ATLAS_RETRY_BASE_SECONDS must be a number"),
        ({"ATLAS_RETRY_BASE_SECONDS": "-1"}, "ATLAS_RETRY_BASE_SECONDS must be between 0"),
        ({"ATLAS_REPLICA_SCHEMA": "Kimai_Replica"}, "must be lower case, got 'Kimai_Replica'"),
        ({"ATLAS_ANALYTICS_SCHEMA": "BI"}, "ATLAS_ANALYTICS_SCHEMA must be lower case"),
    ],
)
def test_bad_values_are_one_line_config_errors(env, message):
    with pytest.raises(ConfigError, match=message) as info:
        load_settings(env)
    assert "\n" not in str(info.value)


def test_dotenv_in_working_directory_is_read_and_process_env_wins(tmp_path, monkeypatch):
    (tmp_path / ".env").write_text("KIMAI_DB_DATABASE=from_file\nATLAS_DB_DATABASE=from_file\n")
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("ATLAS_DB_DATABASE", "from_env")
    monkeypatch.delenv("KIMAI_DB_DATABASE", raising=False)
    monkeypatch.delenv("KIMAI_DB_URL", raising=False)
    monkeypatch.delenv("ATLAS_DB_URL", raising=False)
    s = load_settings()
    assert s.kimai_url.database == "from_file"
    assert s.atlas_url.database == "from_env"


def test_retries_come_from_dotenv_too_and_dbt_directories_from_the_environment(
    tmp_path, monkeypatch
):
    (tmp_path / ".env").write_text(
        "ATLAS_RETRY_ATTEMPTS=2\nATLAS_RETRY_BASE_SECONDS=0.25\nDBT_PROFILES_DIR=~/profiles\n"
    )
    monkeypatch.chdir(tmp_path)
    for name in ("ATLAS_RETRY_ATTEMPTS", "ATLAS_RETRY_BASE_SECONDS", "DBT_PROFILES_DIR"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("DBT_PROJECT_DIR", str(tmp_path / "project"))
    s = load_settings()
    assert (s.retry.attempts, s.retry.base_seconds) == (2, 0.25)
    assert s.dbt_profiles_dir is None  # only the environment may choose the profile
    assert s.dbt_project_dir == tmp_path / "project"
    defaults = load_settings({})
    assert (defaults.retry.attempts, defaults.retry.base_seconds) == (5, 1.0)
    assert defaults.dbt_project_dir is None and defaults.dbt_profiles_dir is None


def test_a_password_given_as_a_url_parameter_is_never_shown():
    s = load_settings(
        {"ATLAS_DB_URL": "postgresql://bi@db.example/atlas?password=hunter2&sslmode=require"}
    )
    assert "hunter2" not in s.describe_atlas()
    assert "sslmode=require" in s.describe_atlas()


def test_working_directories_are_private_per_deployment_and_unusable_ones_are_config_errors(
    tmp_path: Path,
):
    from pipelines.paths import dbt_work_dir, dlt_pipelines_dir

    base = tmp_path / "state"
    one = load_settings({"ATLAS_SYNC_STATE_DIR": str(base), "ATLAS_DB_DATABASE": "atlas"})
    two = load_settings({"ATLAS_SYNC_STATE_DIR": str(base), "ATLAS_DB_DATABASE": "staging"})
    dirs = [dlt_pipelines_dir(one), dlt_pipelines_dir(two), dbt_work_dir(one), dbt_work_dir(two)]
    assert len(set(dirs)) == 4 and all(d.is_relative_to(base) for d in dirs)
    assert {d.stat().st_mode & 0o777 for d in dirs} == {0o700}
    (tmp_path / "file").write_text("")
    blocked = load_settings({"ATLAS_SYNC_STATE_DIR": str(tmp_path / "file" / "state")})
    with pytest.raises(ConfigError, match="set ATLAS_SYNC_STATE_DIR") as info:
        dlt_pipelines_dir(blocked)
    assert "\n" not in str(info.value)


def test_tls_parameters_reach_psycopg2_connectorx_adbc_and_the_dbt_profile():
    from pipelines.transform import dbt_env

    s = load_settings(
        {"ATLAS_DB_URL": "postgresql://bi@db.example/atlas?sslmode=verify-full&sslrootcert=/ca.pem"}
    )
    args = s.atlas_connect_args("x")
    assert (args["sslmode"], args["sslrootcert"]) == ("verify-full", "/ca.pem")
    assert "/atlas?sslmode=verify-full&sslrootcert=%2Fca.pem&options=" in s.atlas_connectorx_url()
    profile = dbt_env(s)
    assert (profile["ATLAS_DB_SSLMODE"], profile["ATLAS_DB_SSLROOTCERT"]) == (
        "verify-full",
        "/ca.pem",
    )


def test_kimai_tls_reaches_both_readers_and_unsupported_parameters_are_refused(tmp_path: Path):
    ca = tmp_path / "ca.pem"
    ca.write_text("-----BEGIN CERTIFICATE-----\n")
    by_env = load_settings({"KIMAI_DB_SSL_MODE": "verify_identity", "KIMAI_DB_SSL_CA": str(ca)})
    by_url = load_settings(
        {"KIMAI_DB_URL": f"mysql://bi@db.example/k?ssl_mode=verify_identity&ssl_ca={ca}"}
    )
    for s in (by_env, by_url):
        assert s.kimai_tls is not None
        assert s.kimai_tls.pymysql_args() == {"ssl": {"check_hostname": True, "ca": str(ca)}}
        assert s.kimai_connectorx_url().endswith(
            f"?ssl-mode=verify_identity&ssl-ca={str(ca).replace('/', '%2F')}"
        )
        assert "ssl" not in s.kimai_url.render_as_string()  # not also given to SQLAlchemy
    assert load_settings({"KIMAI_DB_SSL_MODE": "required"}).kimai_tls.pymysql_args() == {
        "ssl": {"check_hostname": False}
    }
    assert load_settings({}).kimai_tls is None
    for env, message in [
        ({"KIMAI_DB_SSL_MODE": "preferred"}, "KIMAI_DB_SSL_MODE must be one of"),
        ({"KIMAI_DB_SSL_MODE": "verify_ca"}, "needs KIMAI_DB_SSL_CA"),
        ({"KIMAI_DB_SSL_CA": str(tmp_path / "missing.pem")}, "no file at"),
        ({"KIMAI_DB_URL": "mysql://bi@db/k?ssl_key=/k.pem"}, "parameter ssl_key is not supported"),
    ]:
        with pytest.raises(ConfigError, match=message):
            load_settings(env)


def test_time_limits_reach_every_session_and_the_deadline_caps_kimai_statements():
    from pipelines import deadline
    from pipelines.errors import RunTimedOut

    s = load_settings(
        {
            "ATLAS_DB_URL": "postgresql://u@h/a?sslmode=require&options=-cwork_mem%3D64MB",
            "ATLAS_DB_STATEMENT_TIMEOUT_SECONDS": "90",
            "ATLAS_DB_LOCK_TIMEOUT_SECONDS": "0",  # 0: the server's own setting
            "KIMAI_DB_STATEMENT_TIMEOUT_SECONDS": "45.5",
            "KIMAI_DB_LOCK_WAIT_TIMEOUT_SECONDS": "7",
            "ATLAS_RUN_TIMEOUT_SECONDS": "600",
        }
    )
    # after the URL's own options (the later setting wins); a tab, never a space (dlt)
    params = s.atlas_libpq_params()
    assert params == {"sslmode": "require", "options": "-cwork_mem=64MB\t-cstatement_timeout=90000"}
    assert s.atlas_connect_args("x")["options"] == params["options"]
    assert s.limits.run == 600
    assert s.limits.kimai_session_sql(mariadb=True) == [
        "SET SESSION max_statement_time = 45.500",
        "SET SESSION lock_wait_timeout = 7",
    ]
    assert s.limits.kimai_session_sql(mariadb=False)[0] == "SET SESSION max_execution_time = 45500"
    with deadline.run_deadline(3):
        statement = s.limits.kimai_session_sql(mariadb=True)
        assert 2 < float(statement[0].rsplit(" ", 1)[1]) <= 3  # what is left of the run
        assert statement[1] == "SET SESSION lock_wait_timeout = 2"
    with deadline.run_deadline(0.001):
        time.sleep(0.01)
        with pytest.raises(RunTimedOut, match="timed out after 0.001 s"):
            s.limits.kimai_session_sql(mariadb=True)  # no statement starts after it
    assert deadline.remaining() is None
    with pytest.raises(ConfigError, match="ATLAS_RUN_TIMEOUT_SECONDS must be a number"):
        load_settings({"ATLAS_RUN_TIMEOUT_SECONDS": "1h"})


@pytest.mark.parametrize(
    ("env", "warned"),
    [
        ({}, []),  # loopback
        ({"KIMAI_DB_HOST": "localhost", "ATLAS_DB_HOST": "::1"}, []),
        ({"ATLAS_DB_HOST": "/var/run/postgresql"}, []),  # a Unix socket
        ({"KIMAI_DB_HOST": "kimai-db.internal"}, ["Kimai at kimai-db.internal"]),
        ({"ATLAS_DB_HOST": "10.0.0.5"}, ["Atlas DB at 10.0.0.5"]),
        (
            {"KIMAI_DB_URL": "mysql://u@db.example/k", "ATLAS_DB_URL": "postgresql://u@pg/a"},
            ["Kimai at db.example", "Atlas DB at pg"],
        ),
        # a mode chosen, plaintext included, is deliberate
        ({"KIMAI_DB_HOST": "k.example", "KIMAI_DB_SSL_MODE": "disabled"}, []),
        ({"KIMAI_DB_URL": "mysql://u@k.example/k?ssl_mode=required"}, []),
        ({"ATLAS_DB_HOST": "pg.example", "ATLAS_DB_SSL_MODE": "disable"}, []),
        ({"ATLAS_DB_URL": "postgresql://u@pg.example/a?sslmode=verify-full"}, []),
    ],
)
def test_a_remote_database_without_a_tls_mode_is_warned_about(env, warned):
    from pipelines.record.status import Status, render

    warnings = load_settings(env).tls_warnings()
    assert [w.split(" is reached")[0] for w in warnings] == warned
    for w in warnings:
        assert "SSL_MODE=verify" in w and ("disabled to accept" in w or "disable to accept" in w)
    status = Status(now=None, warnings=warnings)  # type: ignore[arg-type]
    assert status.as_json()["warnings"] == warnings
    assert all(f"WARNING: {w}" in render(status) for w in warnings)


def test_atlas_tls_settings_reach_every_connection_and_bad_modes_are_refused():
    from pipelines.transform import dbt_env

    s = load_settings(
        {
            "ATLAS_DB_HOST": "pg.example",
            "ATLAS_DB_SSL_MODE": "verify-full",
            "ATLAS_DB_SSL_ROOT_CERT": "/etc/ssl/atlas-ca.pem",
        }
    )
    args = s.atlas_connect_args("x")
    assert (args["sslmode"], args["sslrootcert"]) == ("verify-full", "/etc/ssl/atlas-ca.pem")
    assert "sslmode=verify-full&sslrootcert=%2Fetc%2Fssl%2Fatlas-ca.pem" in s.atlas_connectorx_url()
    assert dbt_env(s)["ATLAS_DB_SSLMODE"] == "verify-full"  # and dbt's profile
    with pytest.raises(ConfigError, match="ATLAS_DB_SSL_MODE must be one of"):
        load_settings({"ATLAS_DB_SSL_MODE": "verify_full"})


@pytest.mark.parametrize(
    "name",
    [
        "ATLAS_REPLICA_SCHEMA",
        "ATLAS_ANALYTICS_SCHEMA",
        "ATLAS_OVERLAY_SCHEMA",
        "ATLAS_BI_ROLE",
        "KIMAI_TABLE_PREFIX",
        "ATLAS_REPORT_TIMEZONE",
    ],
)
def test_a_name_with_a_trailing_newline_is_refused(name):
    value = {"ATLAS_REPORT_TIMEZONE": "UTC", "KIMAI_TABLE_PREFIX": "kimai2_"}.get(name, "bi")
    load_settings({name: value})
    with pytest.raises(ConfigError, match=name):
        load_settings({name: value + "\n"})


def test_two_processes_starting_together_do_not_share_a_write_probe(tmp_path):
    from pipelines.paths import private_dir

    # another process's probe under the old shared name, at the moment this one checks
    (tmp_path / "work").mkdir()
    (tmp_path / "work" / ".write-check").mkdir()
    assert private_dir(tmp_path / "work") == tmp_path / "work"
    assert sorted(p.name for p in (tmp_path / "work").iterdir()) == [".write-check"]


def test_a_dotenv_file_cannot_choose_the_dbt_profile_or_project(tmp_path, monkeypatch):
    for name in ("DBT_PROFILES_DIR", "DBT_PROJECT_DIR", "KIMAI_TABLE_PREFIX"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.chdir(tmp_path)
    (tmp_path / ".env").write_text(
        "DBT_PROFILES_DIR=/tmp/elsewhere\nDBT_PROJECT_DIR=/tmp/elsewhere\nKIMAI_TABLE_PREFIX=k_\n"
    )
    s = load_settings()
    assert (s.dbt_profiles_dir, s.dbt_project_dir) == (None, None)
    assert s.kimai_table_prefix == "k_"  # other variables still come from .env
    monkeypatch.setenv("DBT_PROFILES_DIR", str(tmp_path / "profiles"))
    assert load_settings().dbt_profiles_dir == tmp_path / "profiles"  # the environment may


def test_bi_role_scope_reaches_dbt_and_a_bad_one_exits_2_with_one_line():
    from pipelines.transform import dbt_env
    from tests.conftest import run_cli

    marts = load_settings({"ATLAS_BI_ROLE": "bi", "ATLAS_BI_ROLE_SCOPE": "marts"})
    assert marts.bi_role_scope == "marts"
    assert dbt_env(marts)["ATLAS_BI_ROLE_SCOPE"] == "marts"
    assert dbt_env(load_settings({"ATLAS_BI_ROLE_SCOPE": ""}))["ATLAS_BI_ROLE_SCOPE"] == "replica"
    # refused before anything connects: no server listens at this address
    out = run_cli(
        "transform",
        env={"ATLAS_DB_HOST": "atlas-db.invalid", "ATLAS_BI_ROLE_SCOPE": "everything"},
    )
    assert out.returncode == 2, out.stdout + out.stderr
    lines = out.stderr.strip().splitlines()
    assert len(lines) == 1 and "ATLAS_BI_ROLE_SCOPE must be replica or marts" in lines[0], lines
