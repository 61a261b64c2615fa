"""Describes the machine and the code measured."""

from __future__ import annotations

import contextlib
import importlib.metadata
import os
import platform
import subprocess
from typing import Any

from benchlib.common import REPO
from benchlib.servers import Maria
from pipelines.demo.servers import pg_query

# -- machine description ---------------------------------------------------------------------------


def _version(pkg: str) -> str:
    try:
        return importlib.metadata.version(pkg)
    except importlib.metadata.PackageNotFoundError:
        return "-"


def _cmd_version(cmd: list[str]) -> str:
    try:
        return subprocess.run(cmd, capture_output=True, text=True, timeout=10).stdout.strip()
    except OSError:
        return "-"


def code_version() -> dict[str, Any]:
    """The product code measured: commit, uncommitted files, and a hash of the sources."""
    import hashlib

    digest = hashlib.sha256()
    for path in sorted(
        [*REPO.glob("pipelines/**/*.py"), *REPO.glob("models/**/*.sql"), *REPO.glob("*.yml")]
    ):
        digest.update(str(path.relative_to(REPO)).encode())
        digest.update(path.read_bytes())
    git = ["git", "-C", str(REPO)]
    return {
        "commit": _cmd_version([*git, "log", "-1", "--format=%h %s"])[:120],
        "dirty": _cmd_version(
            [
                *git,
                "status",
                "--porcelain",
                "--",
                "pipelines",
                "models",
                "macros",
                "dbt_project.yml",
            ]
        ).splitlines(),  # fmt: skip
        "sources_sha256": digest.hexdigest()[:16],
    }


def machine(maria: Maria) -> dict[str, Any]:
    cpu = "-"
    with open("/proc/cpuinfo") as f:
        for line in f:
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    with open("/proc/meminfo") as f:
        mem_kib = int(f.readline().split()[1])
    os_name = platform.platform()
    with contextlib.suppress(OSError), open("/etc/os-release") as f:
        for line in f:
            if line.startswith("PRETTY_NAME="):
                os_name = line.split("=", 1)[1].strip().strip('"')
    pg_version = pg_query("postgres", "SHOW server_version")[0][0]
    pg_settings = dict(
        pg_query(
            "postgres",
            "SELECT name, setting || coalesce(unit, '') FROM pg_settings WHERE name IN"
            " ('shared_buffers', 'synchronous_commit', 'work_mem', 'max_wal_size')",
        )
    )
    return {
        "cpu": cpu,
        "cores": os.cpu_count(),
        "ram_gib": round(mem_kib / 1024 / 1024, 1),
        "os": os_name,
        "kernel": platform.release(),
        "mariadb": maria.one("SELECT VERSION()"),
        "mariadb_client": _cmd_version(["mariadb", "--version"]),
        "postgresql": pg_version,
        "psql": _cmd_version(["psql", "--version"]),
        "pg_settings": pg_settings,
        "python": platform.python_version(),
        "packages": {
            p: _version(p)
            for p in (
                "dlt",
                "connectorx",
                "pyarrow",
                "adbc-driver-postgresql",
                "dbt-core",
                "dbt-postgres",
                "SQLAlchemy",
                "PyMySQL",
                "psycopg2-binary",
            )
        },  # fmt: skip
    }
