"""TLS to Atlas DB and to Kimai, against real servers that accept nothing else.

The tests start their own PostgreSQL cluster (initdb) and MariaDB server on free ports, with
self-signed certificates: PostgreSQL's pg_hba.conf admits only ``hostssl`` connections and
MariaDB runs with ``require_secure_transport``. A whole scheduled run (lock, audit, key
reads, bulk COPY, dlt, dbt build, connectorx and PyMySQL on Kimai) that succeeds there made
every one of its connections over TLS, and with ``verify-full`` / ``verify_identity`` it
checked each server's certificate against the given root.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pymysql
import pytest

from pipelines.demo.atlas_overlays import create_atlas_overlays
from pipelines.demo.kimai_data import build_kimai
from tests.conftest import run_cli
from tests.private_servers import private_mariadb, private_postgres


def _self_signed(directory: Path, name: str) -> tuple[Path, Path]:
    cert, key = directory / f"{name}.crt", directory / f"{name}.key"
    subprocess.run(
        [
            "openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2",
            "-subj", "/CN=127.0.0.1", "-addext", "subjectAltName=IP:127.0.0.1,DNS:localhost",
            "-keyout", str(key), "-out", str(cert),
        ],
        check=True,
        capture_output=True,
        timeout=60,
    )  # fmt: skip
    return cert, key


@pytest.fixture(scope="module")
def certificates() -> Iterator[Path]:
    """A directory the servers can read (owned by postgres when run as root)."""
    if shutil.which("openssl") is None:
        pytest.fail("openssl is needed for the TLS tests")
    # not under pytest's own temporary directory: its parents are private to root
    root = Path(tempfile.mkdtemp(prefix="tls-certificates-"))
    try:
        yield root
    finally:
        shutil.rmtree(root, ignore_errors=True)


@pytest.fixture(scope="module")
def tls_postgres(certificates: Path) -> Iterator[dict[str, object]]:
    """A private PostgreSQL accepting only TLS (hostssl), with a self-signed certificate."""
    cert, key = _self_signed(certificates, "pg-server")
    other, _ = _self_signed(certificates, "pg-stranger")
    if os.geteuid() == 0:
        for path in (certificates, cert, key):
            shutil.chown(path, "postgres")
    key.chmod(0o600)
    hba = (
        "local all all trust\n"
        "hostssl all all 127.0.0.1/32 trust\n"
        "hostnossl all all 127.0.0.1/32 reject\n"
    )
    settings = f"ssl = on\nssl_cert_file = '{cert}'\nssl_key_file = '{key}'\n"
    with private_postgres(settings, hba=hba) as server:
        server.query("postgres", "CREATE DATABASE atlas")
        yield {"port": server.port, "cert": cert, "stranger": other, "server": server}


@pytest.fixture(scope="module")
def tls_mariadb(certificates: Path) -> Iterator[dict[str, object]]:
    """A private MariaDB that refuses connections without TLS (require_secure_transport)."""
    cert, key = _self_signed(certificates, "mariadb-server")
    other, _ = _self_signed(certificates, "mariadb-stranger")
    # the local socket counts as secure: the test's own way in
    with private_mariadb(
        f"--ssl-cert={cert}", f"--ssl-key={key}", "--require-secure-transport=ON"
    ) as server:
        yield {"port": server.port, "socket": server.socket, "cert": cert, "stranger": other}


def _tls_connect(server: dict[str, object]):
    # the test's own reads go over the server's local socket
    return server["server"].connect("atlas")  # type: ignore[attr-defined]


def _tls_query(server: dict[str, object], sql: str) -> list[tuple]:
    return server["server"].query("atlas", sql)  # type: ignore[attr-defined]


def test_a_whole_run_against_servers_that_accept_only_tls(tls_postgres, tls_mariadb, tmp_path):
    pg, my = tls_postgres, tls_mariadb
    kimai = pymysql.connect(unix_socket=str(my["socket"]), user="root", autocommit=True)
    with kimai.cursor() as cur:
        cur.execute("CREATE DATABASE kimai CHARACTER SET utf8mb4")
    build_kimai(f"mysql+pymysql://root@localhost/kimai?unix_socket={my['socket']}", seed=8,
                timesheets=300)  # fmt: skip
    kimai.select_db("kimai")

    def kimai_rows(sql: str) -> list[tuple]:
        with kimai.cursor() as cur:
            cur.execute(sql)
            return list(cur.fetchall())

    atlas = f"postgresql://postgres@127.0.0.1:{pg['port']}/atlas"
    verified_atlas = f"{atlas}?sslmode=verify-full&sslrootcert={pg['cert']}"
    base = {
        "KIMAI_DB_HOST": "127.0.0.1",
        "KIMAI_DB_PORT": str(my["port"]),
        "KIMAI_DB_USER": "root",
        "KIMAI_DB_DATABASE": "kimai",
        "KIMAI_DB_SSL_MODE": "verify_identity",
        "KIMAI_DB_SSL_CA": str(my["cert"]),
        "ATLAS_DB_URL": verified_atlas,
        "ATLAS_SYNC_STATE_DIR": str(tmp_path / "state"),
    }

    def run(**changes: str):
        return run_cli(env={**base, **changes}, timeout=600)

    def refused(result, message: str, code: int = 4) -> None:
        assert result.returncode == code and len(result.stderr.splitlines()) == 1, result.stderr
        assert message in result.stderr, result.stderr

    def schemas() -> list[tuple]:
        return _tls_query(
            pg,
            "SELECT nspname FROM pg_namespace WHERE nspname NOT LIKE 'pg\\_%'"
            " AND nspname NOT IN ('information_schema', 'public') ORDER BY 1",
        )

    # Atlas DB: plaintext is rejected, and a certificate from another root is refused,
    # both before anything is written
    refused(run(ATLAS_DB_URL=f"{atlas}?sslmode=disable"), "no encryption")
    refused(
        run(ATLAS_DB_URL=f"{atlas}?sslmode=verify-full&sslrootcert={pg['stranger']}"),
        "certificate verify failed",
    )
    assert schemas() == []
    # Kimai: the same (these runs reach Atlas DB, so their audit rows say they failed)
    refused(run(KIMAI_DB_SSL_CA=str(my["stranger"])), "certificate verify failed")
    # (MariaDB answers a plaintext login with "access denied": exit 2, as for a bad login)
    refused(run(KIMAI_DB_SSL_MODE="disabled"), "Access denied", code=2)

    # Atlas's overlay tables (Atlas's own app keeps them), for Kimai's projects and customers
    conn = _tls_connect(pg)
    try:
        customers = dict(kimai_rows("SELECT id, currency FROM kimai2_customers"))
        projects = {
            p: customers[c] for p, c in kimai_rows("SELECT id, customer_id FROM kimai2_projects")
        }
        create_atlas_overlays(conn, "public", projects, customers)
        conn.commit()
    finally:
        conn.close()

    # the scheduled job, every connection to both servers over verified TLS
    good = run()
    assert good.returncode == 0, good.stderr
    assert "dbt build passed" in good.stdout
    ((count, total),) = kimai_rows("SELECT COUNT(*), SUM(duration) FROM kimai2_timesheet")
    assert _tls_query(
        pg, "SELECT count(*), sum(duration) FROM kimai_replica.replica_kimai_timesheets"
    ) == [(count, total)]
    assert _tls_query(
        pg,
        "SELECT command, status, build_status FROM kimai_replica.sync_runs"
        " WHERE status = 'success'",
    ) == [("run", "success", "published")]
    # and BI's views were built there
    assert _tls_query(pg, "SELECT count(*) FROM analytics.vw_timesheet_facts") == [(count,)]
    kimai.close()
