"""Run the dbt project (models + data tests) in-process with dbt's Python runner."""

from __future__ import annotations

import copy
import datetime as dt
import hashlib
import importlib.metadata
import json
import logging
import os
import shutil
import tempfile
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from pipelines.adapters.replica import open_replica
from pipelines.config import Settings
from pipelines.dberrors import classify
from pipelines.dbt_sessions import kept_sessions
from pipelines.errors import ConfigError, DatabaseError, DataTestFailed
from pipelines.paths import dbt_work_dir

log = logging.getLogger("pipelines.transform")

PROJECT_DIR = Path(__file__).resolve().parent.parent
"""The repository root holds dbt_project.yml (the project is installed editable)."""

_SECRET_ENV = ("ATLAS_DB_PASSWORD",)
"""Settings the build reads that stay out of `project_digest` (the audit stores it)."""

PARSED_COMMANDS = frozenset({"build", "run", "test"})
"""The dbt commands `run_dbt` gives the parsed project kept in this process (`_Parsed`)."""


@dataclass
class TransformResult:
    """Outcome of a dbt build."""

    passed: int = 0
    failed: list[str] = field(default_factory=list)
    warned: list[str] = field(default_factory=list)
    schemas: set[str] = field(default_factory=set)
    """The schemas of the models, seeds and snapshots the invocation ran (or skipped)."""
    published_at: dt.datetime | None = None
    """When the build became what BI reads (`pipelines.publish`); None if it did not."""
    delta: bool = False
    """A delta build: the set-level data tests were left to the full audit."""


def read_yaml(path: Path) -> Any:
    """One of the project's yml files, parsed.

    By libyaml where PyYAML was built with it: its pure-Python loader took about a second
    for the project's files, on every delta build.
    """
    return yaml.load(path.read_text(), Loader=getattr(yaml, "CSafeLoader", yaml.SafeLoader))


def project_dir(settings: Settings) -> Path:
    """The dbt project directory (``DBT_PROJECT_DIR`` overrides)."""
    path = settings.dbt_project_dir or PROJECT_DIR
    if not (path / "dbt_project.yml").is_file():
        raise ConfigError(f"no dbt project at {path} (set DBT_PROJECT_DIR)")
    return path


def dbt_env(settings: Settings) -> dict[str, str]:
    """The variables `profiles.example.yml` reads, derived from the validated settings."""
    url = settings.atlas_url
    env = {
        "ATLAS_REPLICA_SCHEMA": settings.replica_schema,
        "ATLAS_ANALYTICS_SCHEMA": settings.analytics_schema,
        "ATLAS_OVERLAY_SCHEMA": settings.overlay_schema,
        "ATLAS_BI_ROLE": settings.bi_role or "",
        "ATLAS_BI_ROLE_SCOPE": settings.bi_role_scope,
        "ATLAS_TIMESHEET_FACTS_MATERIALIZATION": settings.timesheet_facts_materialization,
        "ATLAS_TIMESHEET_FACTS_CHECK": settings.timesheet_facts_check,
        "ATLAS_REPORT_TIMEZONE": settings.report_timezone,
    }
    if settings.atlas_dialect == "duckdb":
        env["ATLAS_DUCKDB_PATH"] = str(Path(url.database or "atlas.duckdb").resolve())
    else:
        env.update(
            ATLAS_DB_HOST=url.host or "127.0.0.1",
            ATLAS_DB_PORT=str(url.port or 5432),
            ATLAS_DB_USER=url.username or "",
            ATLAS_DB_PASSWORD=url.password or "",
            ATLAS_DB_DATABASE=url.database or "",
        )
        # TLS settings of the URL, in the profile's own keys (empty: libpq's defaults)
        tls = settings.atlas_libpq_params()
        for key in ("sslmode", "sslrootcert", "sslcert", "sslkey"):
            env[f"ATLAS_DB_{key.upper()}"] = tls.get(key, "")
        if tls.get("password") and not url.password:
            env["ATLAS_DB_PASSWORD"] = tls["password"]
        # the session limits: libpq reads PGOPTIONS, so they hold with your own profile too
        # (unless it sets search_path, which dbt-postgres passes as its own options)
        env["PGOPTIONS"] = tls.get("options", "")
    return env


def project_digest(settings: Settings, project: Path) -> str:
    """Digest of what the dbt project builds from, apart from the data.

    The files under the project's model, macro and test paths and `dbt_project.yml`, the
    profile, the dbt and product versions, and the settings the build reads.
    """
    config = read_yaml(project / "dbt_project.yml") or {}
    digest = hashlib.sha256()
    files = [project / "dbt_project.yml", _profile(settings, project)]
    for key in ("model-paths", "macro-paths", "test-paths", "seed-paths", "snapshot-paths"):
        for folder in config.get(key) or []:
            files += sorted(p for p in (project / folder).rglob("*") if p.is_file())
    for path in files:
        # names relative to the project: a copy of it elsewhere digests the same
        name = path.relative_to(project) if path.is_relative_to(project) else path
        digest.update(f"{name}\0".encode())
        digest.update(path.read_bytes())
    env = {k: v for k, v in sorted(dbt_env(settings).items()) if k not in _SECRET_ENV}
    versions = {p: importlib.metadata.version(p) for p in ("dbt-core", "dbt-postgres")}
    versions["product"] = importlib.metadata.version("kimai-atlas-sync")
    digest.update(json.dumps([env, versions], sort_keys=True).encode())
    return digest.hexdigest()


def _profile(settings: Settings, project: Path) -> Path:
    if settings.dbt_profiles_dir is not None:
        return settings.dbt_profiles_dir / "profiles.yml"
    return project / "profiles.example.yml"


def work_dir(settings: Settings) -> Path:
    """The target and log directory of dbt for this deployment (`pipelines.paths`)."""
    return dbt_work_dir(settings)


@contextmanager
def _profiles_dir(settings: Settings, project: Path) -> Iterator[Path]:
    if settings.dbt_profiles_dir is not None:
        yield settings.dbt_profiles_dir
        return
    # dbt wants a file named profiles.yml; the example reads everything from env_var()
    with tempfile.TemporaryDirectory(prefix="kimai-atlas-dbt-") as tmp:
        shutil.copyfile(project / "profiles.example.yml", Path(tmp) / "profiles.yml")
        yield Path(tmp)


@contextmanager
def _environment(values: dict[str, str]) -> Iterator[None]:
    saved = {k: os.environ.get(k) for k in values}
    os.environ.update(values)
    os.environ.setdefault("DBT_SEND_ANONYMOUS_USAGE_STATS", "false")
    try:
        yield
    finally:
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


def _check_atlas(settings: Settings) -> None:
    """Fail early, with the contract's codes, on what dbt would report as a model error."""
    replica = open_replica(settings)
    try:
        replica.check()
        if settings.bi_role and settings.atlas_dialect == "postgresql":
            found = replica.query("SELECT 1 FROM pg_roles WHERE rolname = %s", (settings.bi_role,))
            if not found:
                raise ConfigError(f"ATLAS_BI_ROLE {settings.bi_role!r} does not exist in Atlas DB")
        if settings.atlas_dialect == "postgresql":
            # the views convert with the server's own zone database, which may be older
            known = replica.query(
                "SELECT 1 FROM pg_timezone_names WHERE name = %s", (settings.report_timezone,)
            )
            if not known:
                raise ConfigError(
                    f"ATLAS_REPORT_TIMEZONE {settings.report_timezone!r} is not a time zone"
                    " Atlas DB's PostgreSQL knows (SELECT name FROM pg_timezone_names)"
                )
    finally:
        replica.close()


def invoke_dbt(
    settings: Settings,
    args: Sequence[str],
    target_dir: Path | None = None,
    dbt_vars: dict[str, str] | None = None,
    env: dict[str, str] | None = None,
    reuse_parse: bool = False,
) -> Any:
    """Invoke dbt in-process with `args` against the configured Atlas DB; dbt's own result.

    The profile is profiles.example.yml fed from the settings (or DBT_PROFILES_DIR), the
    target follows the Atlas DB's dialect, and dbt's files go to `target_dir`.

    Args:
        settings: Runtime settings.
        args: The dbt command and its own options.
        target_dir: Where dbt keeps its target and logs (`work_dir` by default).
        dbt_vars: dbt's ``--vars``.
        env: Environment variables for this invocation only, read while dbt executes
            (not while it parses: the parse is shared with invocations without them).
        reuse_parse: Give dbt the project as this process last parsed it, when nothing
            it was parsed from changed since (`_Parsed`).

    Raises:
        ConfigError: No dbt project, or an ATLAS_BI_ROLE that does not exist.
        DatabaseError: Atlas DB cannot be reached.

    """
    from dbt.cli.main import dbtRunner

    project = project_dir(settings)
    _check_atlas(settings)
    target = "local" if settings.atlas_dialect == "duckdb" else "atlas"
    values = {**dbt_env(settings), **(env or {})}
    with _profiles_dir(settings, project) as profiles, _environment(values):
        tdir = target_dir or work_dir(settings)
        flags = [
            "--project-dir",
            str(project),
            "--target",
            target,
            "--target-path",
            str(tdir / "target"),
            "--log-path",
            str(tdir / "logs"),
        ]
        if dbt_vars:
            flags += ["--vars", json.dumps(dbt_vars, sort_keys=True)]
        if "DBT_LOG_LEVEL_FILE" not in os.environ:
            # dbt's file log at its default (debug) level formats every statement of every
            # node: about 15 % of a build's CPU; warnings and errors are what it is read for
            flags += ["--log-level-file", "warn"]
        # what the parse is for: the project's files and settings, and these flags (which
        # name the project's directory)
        key = json.dumps([project_digest(settings, project), flags]) if reuse_parse else None
        flags += ["--profiles-dir", str(profiles)]
        if _project_changed(tdir / "target", project):
            flags += ["--no-partial-parse"]
        with kept_sessions():
            manifest = _PARSED.manifest(key, flags) if key is not None else None
            return dbtRunner(manifest=manifest).invoke([*args, *flags])


class _Parsed:
    """The dbt project as this process last parsed it, for the invocations after.

    dbt parses the project at the start of every invocation: from its saved partial parse,
    still about 0.3 s for this project in a warm process and most of a second in a new one.
    A delta build invokes dbt twice and the follower on every tick that changed rows, so
    the parse is kept (dbt's documented ``dbtRunner(manifest=...)``) and redone only when
    `project_digest` or the flags change: a model edited under a running follower is
    parsed by its next build, as it would be by a new process.

    dbt compiles into the manifest's nodes, and a node compiled once keeps its "ephemeral
    models injected" flag: its next compile left out their CTEs (``relation
    "__dbt__cte__int_timesheet_facts_candidates" does not exist`` on a follower's second
    build) or took the CTE text of the invocation before. So before each invocation the
    nodes' compilation fields are put back as the parse left them. (A copy of the manifest
    would be simpler, but dbt 1.11's ``Manifest.__reduce_ex__`` passes its fields in
    another order than the class takes them: the copy's lookups are broken.)
    """

    COMPILED = (
        "compiled_path",
        "compiled",
        "compiled_code",
        "extra_ctes_injected",
        "extra_ctes",
        "_pre_injected_sql",
        "relation_name",
    )
    """The node fields dbt's compilation writes (tests' relation_name included)."""

    def __init__(self) -> None:
        self._key: str | None = None
        self._manifest: Any = None
        self._parsed: dict[str, dict[str, Any]] = {}

    def manifest(self, key: str, flags: Sequence[str]) -> Any:
        """The project parsed for `key` (now, with `flags`, unless kept); None if that failed."""
        from dbt.cli.main import dbtRunner

        if key != self._key:
            self._key, self._manifest = None, None
            res = dbtRunner().invoke(["parse", "--quiet", "--no-write-json", *flags])
            if not res.success or res.result is None:
                return None  # the invocation itself parses again, and says what failed
            self._key, self._manifest = key, res.result
            self._parsed = {
                uid: {f: copy.copy(getattr(node, f)) for f in self.COMPILED if hasattr(node, f)}
                for uid, node in self._manifest.nodes.items()
            }
        for uid, fields in self._parsed.items():
            node = self._manifest.nodes[uid]
            for name, value in fields.items():
                setattr(node, name, copy.copy(value))
        return self._manifest


_PARSED = _Parsed()


def _project_changed(target: Path, project: Path) -> bool:
    """Whether the target directory last parsed another dbt project directory; notes this one.

    dbt reuses its saved parse when dbt_project.yml, the profile and the variables are the
    same, and then compares the files one by one by their path inside the project. Another
    copy of the project (DBT_PROJECT_DIR pointed elsewhere) passes that check, and a model
    file and its properties changed together in it were seen half-updated: the contract of
    the old copy checked against the SQL of the new one. A project directory of its own gets
    a full parse.
    """
    stamp = target / "project_dir.txt"
    now = str(project.resolve())
    try:
        before = stamp.read_text()
    except OSError:
        before = None
    if before != now:
        target.mkdir(parents=True, exist_ok=True)
        stamp.write_text(now)
    return before is not None and before != now


def run_dbt(
    settings: Settings,
    args: Sequence[str],
    target_dir: Path | None = None,
    build_suffix: str = "",
    env: dict[str, str] | None = None,
    what: str = "dbt build",
) -> TransformResult:
    """Invoke dbt with `args` (e.g. ``["build"]``) against the configured Atlas DB.

    Args:
        settings: Runtime settings.
        args: The dbt command and its own options.
        target_dir: Where dbt keeps its target and logs (`work_dir` by default).
        build_suffix: Appended to every schema the project builds (shadow schemas for
            `pipelines.publish`); empty builds the live schemas in place.
        env: Environment variables for this invocation only (beside the profile's).
        what: How its failures name the build (``dbt build``, ``delta build``).

    Raises:
        DataTestFailed: A model or data test failed; the message names them.
        DatabaseError: dbt could not run (connection, compilation).

    """
    result = TransformResult()
    vars_ = {"build_schema_suffix": build_suffix} if build_suffix else None
    # dbt would write manifest.json twice per invocation (after parsing and at the end), with
    # Python's pure-Python JSON encoder: about a tenth of a small build's CPU. Nothing here
    # reads it (`dbt parse` through the `dbt` command writes it for dbt-metabase); the run
    # results are written below, for whoever reads a build's timings.
    res = invoke_dbt(
        settings,
        [*args, "--quiet", "--no-write-json"],
        target_dir,
        vars_,
        env,
        reuse_parse=args[0] in PARSED_COMMANDS,
    )
    if res.exception is not None and res.result is None:
        raise DatabaseError(f"dbt could not run: {str(res.exception).strip().splitlines()[0]}")
    if hasattr(res.result, "write"):
        results_file = (target_dir or work_dir(settings)) / "target" / "run_results.json"
        results_file.parent.mkdir(parents=True, exist_ok=True)
        res.result.write(str(results_file))
    for r in getattr(res.result, "results", None) or []:
        status = str(r.status).lower().split(".")[-1]
        name = r.node.name if r.node is not None else "?"
        if r.node is not None and str(r.node.resource_type).split(".")[-1].lower() in {
            "model",
            "seed",
            "snapshot",
        }:
            result.schemas.add(r.node.schema)
        if status in {"error", "fail", "runtime error"}:
            first_line = (r.message or "").strip().splitlines()[:1]
            result.failed.append(f"{name} ({status}: {' '.join(first_line)})")
        elif status == "warn":
            result.warned.append(name)
        elif status != "skipped":  # skipped: behind a failure, counted with neither
            result.passed += 1
    for name in result.warned:
        log.warning("dbt warning: %s", name)
    if result.failed:
        if any(classify(Exception(f)) == "transient" for f in result.failed):
            raise DatabaseError(f"{what} lost Atlas DB: {result.failed[0]}")
        raise DataTestFailed(
            f"{what} failed: {len(result.failed)} failing node(s): " + "; ".join(result.failed[:5])
        )
    if not res.success:
        raise DatabaseError(f"{what} failed (see dbt's log)")
    return result
