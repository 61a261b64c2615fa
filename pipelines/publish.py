"""Write–audit–publish of the dbt project: BI reads a build only once all of it passed.

dbt-postgres replaces a view by renaming the old one and dropping it with CASCADE, and
commits model by model: a build that stops half-way (a failing test, a model error, a
killed process, a lost connection) would leave BI with dependent views gone and the rest a
mix of two builds. So the runner never builds where BI reads:

1. **Write.** dbt builds the whole project into shadow schemas, the live names plus
   ``_build`` (`analytics_build`, `analytics_internal_build`; the var
   ``build_schema_suffix`` of macros/generate_schema_name.sql). Views there reference each
   other and the replica only. The shadow schemas are the previous live ones (see 3), so
   an incremental table there is refreshed from its own stored state, not rebuilt.
2. **Audit.** Every model and data test runs there. Any failure stops here: the live
   schemas are untouched, and the next build starts over in the shadow schemas.
3. **Publish.** One transaction renames each live schema to its shadow name and each
   shadow schema to its live name, moves the BI role's USAGE grant to the new live BI
   schema and records the publication in the run audit. PostgreSQL views reference
   relations by OID, so every view keeps pointing at the objects of its own build, whatever
   the schemas are called. Readers see the old build or the new one, never a mix, and
   never a missing relation.

DuckDB (the embedded demo, which BI does not read while it runs) builds in place: its views
are stored as SQL text, so renamed schemas would break them.
"""

from __future__ import annotations

import datetime as dt
import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pipelines.adapters.layout import quote_ansi
from pipelines.config import Settings
from pipelines.dberrors import database_failure
from pipelines.errors import PipelineError
from pipelines.lock import OWNER_COMMENT
from pipelines.record.audit import RUNS, TABLE_RUNS
from pipelines.record.changelog import LOG_TABLE, PRUNED_TABLE
from pipelines.record.follower import FOLLOWER
from pipelines.registry import TABLES
from pipelines.transform import TransformResult, project_dir, read_yaml, run_dbt, work_dir

log = logging.getLogger("pipelines.publish")

BUILD_SUFFIX = "_build"
"""Appended to every live schema name to make its shadow schema."""

_SWAP_SUFFIX = "_swap"
"""A live schema's name for the moment of the swap (inside the transaction only)."""

LOCK_TIMEOUT = "30s"
"""How long the swap waits for a lock before it gives up (the build stays unpublished)."""


@dataclass(frozen=True)
class BuildRequest:
    """What `transform` asked dbt for."""

    select: tuple[str, ...] = ()
    """dbt selection (``--select``); empty builds the whole project."""
    full_refresh: bool = False
    """Rebuild incremental models from scratch (dbt's ``--full-refresh``)."""
    delta: bool = False
    """A delta build (`pipelines.build_gate`): every model, the row-level data tests only."""
    keep_views: bool = False
    """A delta build whose shadow schemas hold this project's views: only tables are run."""
    changed_tables: tuple[str, ...] = ()
    """A delta build: the replica tables written since the last build (registry names);
    its data tests are those that depend on them (`delta_tests`). Empty: every one."""
    since: str | None = None
    """A delta build: the change-log position the last build read (`delta_env`)."""


DELTA_ENV = "ATLAS_BUILD_DELTA"
"""Read by macros/delta_where_subquery.sql: ``on`` narrows row-level tests to rewritten rows."""

DELTA_SINCE_ENV = "ATLAS_BUILD_DELTA_SINCE"
"""Read by macros/delta_where_subquery.sql with ``view``: the timesheets the change log
names after this position are those a delta build's timesheet-grain tests read."""

TIMESHEET_TABLES = ("timesheets", "timesheet_tags")
"""The registry tables whose change-log keys are timesheet ids (`delta_env`)."""

SET_LEVEL_TESTS = ("test_name:unique", "test_name:unique_combination_of_columns", "tag:set_level")
"""The data tests a delta build leaves to the full audit: they prove a whole set."""


SYNC_TABLES = (RUNS, TABLE_RUNS, FOLLOWER, LOG_TABLE, PRUNED_TABLE)
"""The sync's own tables: every run writes some of them (audit, heartbeat, change log)."""


def delta_tests(project: Path, changed_tables: Sequence[str]) -> list[str]:
    """The dbt selection of a delta build's data tests: those that depend on what changed.

    A delta build follows a green build of the same project and overlays (`build_gate`),
    so only the replica tables the change log names, and the sync's own tables, are new
    inputs. A test that depends on none of them would read what the last build tested.
    The sources are found by table name in the project's own source files, whatever the
    sources are called; a changed table no source declares selects every data test.
    """
    sources = _sources_by_table(project)
    specs = {spec.name: spec for spec in TABLES}
    tables = [specs[name].replica_table if name in specs else name for name in changed_tables]
    if not tables or any(t not in sources for t in tables):
        return ["test_type:data"]
    wanted = [*tables, *(t for t in SYNC_TABLES if t in sources)]
    return [f"source:{sources[t]}+,test_type:data" for t in wanted]


def delta_env(changed_tables: Sequence[str], since: str | None) -> dict[str, str]:
    """The environment of a delta build's tests (read by macros/delta_where_subquery.sql).

    With ``table_incremental`` the timesheet-grain tests read the timesheets the build
    rewrote. With ``view`` there is no such table: when only timesheets and their tag pairs
    changed since the last build, the timesheets the change log names after its position
    are every timesheet whose row may differ from what that build tested (its project,
    activity, user and tags did not change). When anything else changed (a project's
    rename reaches each of its timesheets), no position is given and they read every row.
    """
    env = {DELTA_ENV: "on"}
    if since is not None and changed_tables and set(changed_tables) <= set(TIMESHEET_TABLES):
        env[DELTA_SINCE_ENV] = str(int(since))
    return env


def _sources_by_table(project: Path) -> dict[str, str]:
    """Table name (its identifier) → ``source_name.table_name``, from the project's yml."""
    config = read_yaml(project / "dbt_project.yml") or {}
    found: dict[str, str] = {}
    for folder in config.get("model-paths") or ["models"]:
        for path in sorted((project / folder).rglob("*.yml")):
            doc = read_yaml(path) or {}
            for source in doc.get("sources") or []:
                for table in source.get("tables") or []:
                    name = table["name"]
                    found[table.get("identifier") or name] = f"{source['name']}.{name}"
    return found


def shadow_schemas(*results: TransformResult) -> list[str]:
    """The shadow schemas the given dbt invocations built into (their models' schemas)."""
    return sorted({s for r in results for s in r.schemas if s.endswith(BUILD_SUFFIX)})


def build(
    settings: Settings,
    request: BuildRequest,
    target_dir: Path | None = None,
    on_publish: Callable[[Any | None], None] | None = None,
) -> TransformResult:
    """Build the dbt project where BI does not read it, test it, then publish it at once.

    Args:
        settings: Runtime settings.
        request: Selection and full refresh.
        target_dir: dbt's target and log directory (`pipelines.transform.work_dir`).
        on_publish: Records the publication: called with the swap transaction's cursor
            (so that the record commits with the swap), or with None after an in-place
            build.

    Returns:
        The build's counts, with the publication time.

    Raises:
        DataTestFailed: A model or data test failed; nothing was published.
        DatabaseError: dbt or the swap could not run; nothing was published.

    """
    tdir = target_dir or work_dir(settings)
    in_place = settings.atlas_dialect == "duckdb"
    suffix = "" if in_place else BUILD_SUFFIX
    select = [a for s in request.select for a in ("--select", s)]
    if request.delta and not in_place:
        kept = shadow_views_kept(settings) if request.keep_views else []
        if not kept:
            clear_shadow_views(settings)
        return _delta(settings, tdir, on_publish, kept, request)
    if not in_place:
        clear_shadow_views(settings)
    if request.select and not in_place:
        # the shadow schemas hold the previous build (or a failed one): every model the
        # selection leaves out is brought up to date there first, so what is published is
        # the whole project as it is now
        exclude = [a for s in request.select for a in ("--exclude", s)]
        rest = run_dbt(settings, ["run", *exclude], target_dir=tdir, build_suffix=suffix)
    else:
        rest = TransformResult()
    # dbt's unit tests prove the models' SQL, which ships with the product, not the data:
    # the test suite runs them (`dbt test --select test_type:unit`), a scheduled build not
    args = ["build", *select, "--exclude-resource-type", "unit_test"]
    args += ["--full-refresh"] if request.full_refresh else []
    result = run_dbt(settings, args, target_dir=tdir, build_suffix=suffix)
    if in_place:
        result.published_at = dt.datetime.now(dt.UTC)
        if on_publish is not None:
            on_publish(None)
        return result
    result.published_at = swap(settings, shadow_schemas(rest, result), on_publish)
    return result


def _delta(
    settings: Settings,
    tdir: Path,
    on_publish: Callable[[Any | None], None] | None,
    kept: Sequence[str],
    request: BuildRequest,
) -> TransformResult:
    """A delta build: the models, then the row-level data tests, then the publication.

    Two invocations, so that every test reads the models as this build left them: the
    tests narrowed to the rewritten timesheets find those by the position the incremental
    facts model stored in this build (macros/delta_where_subquery.sql).

    `kept` names the shadow schemas whose views this project builds (the build published
    before the last one was built from it, `pipelines.build_gate`): their views read the
    replica live and the tables by reference, so only the tables are refreshed, in place
    (incremental models; macros/recomputed_in_place.sql), and every one of those schemas
    is published. Empty: every model runs. The data tests are those that depend on the
    request's changed tables (`delta_tests`), narrowed where they can be (`delta_env`).
    """
    run = ["run", "--select", "config.materialized:incremental"] if kept else ["run"]
    if kept:
        log.info("delta build: the shadow schemas hold this project's views; tables only")
    models = run_dbt(settings, run, target_dir=tdir, build_suffix=BUILD_SUFFIX, what="delta build")
    exclude = [a for s in SET_LEVEL_TESTS for a in ("--exclude", s)]
    result = run_dbt(
        settings,
        ["test", "--select", *delta_tests(project_dir(settings), request.changed_tables), *exclude],
        target_dir=tdir,
        build_suffix=BUILD_SUFFIX,
        env=delta_env(request.changed_tables, request.since),
        what="delta build",
    )
    result.passed += models.passed
    result.warned = models.warned + result.warned
    result.schemas |= models.schemas
    result.delta = True
    shadows = sorted(set(kept) | set(shadow_schemas(result)))
    result.published_at = swap(settings, shadows, on_publish)
    return result


def shadow_views_kept(settings: Settings) -> list[str]:
    """The shadow schemas, when every live schema's views are in its shadow by the same name.

    A delta build keeps the shadow's views only when the audit says they were built from
    the same project (`pipelines.build_gate`); this catalog check guards against a shadow
    schema dropped or changed by hand since. Empty when they differ.

    Raises:
        DatabaseError: Atlas DB could not be reached or refused.

    """
    views = _analytics_views(settings)
    live = {(s, v) for s, v in views if not _shadow(s)}
    shadow = {(s.removesuffix(BUILD_SUFFIX), v) for s, v in views if _shadow(s)}
    if not live or live != shadow:
        return []
    return sorted({s for s, _ in views if _shadow(s)})


def clear_shadow_views(settings: Settings) -> int:
    """Drop every view of the shadow schemas before dbt builds into them; tables stay.

    dbt replaces an existing view by renaming it and dropping the old one with CASCADE,
    which drops the views that depend on it. Two of its threads doing that at once for
    views with dependents in common lock the same catalog rows in opposite orders, and
    PostgreSQL aborts one of them ("deadlock detected"): a failed build for nothing. In
    shadow schemas without views dbt only creates them. Every build recreates every view
    (the models a selection leaves out are run first), and tables (the incremental facts,
    the budget usage) keep their rows, from which an incremental model continues.

    Returns:
        How many views were dropped.

    Raises:
        DatabaseError: Atlas DB could not be reached or refused.

    """
    return sum(1 for s, _ in _analytics_views(settings, drop=True) if _shadow(s))


def _analytics_views(settings: Settings, drop: bool = False) -> list[tuple[str, str]]:
    """The views of the live and shadow analytics schemas as (schema, name).

    With `drop`, those of the shadow schemas are dropped in the same transaction.
    """
    import psycopg2

    analytics = settings.analytics_schema
    custom = analytics.replace("\\", "\\\\").replace("_", "\\_").replace("%", "\\%")
    conn = _connect(settings, "prepare the build")
    try:
        with conn, conn.cursor() as cur:
            cur.execute(f"SET LOCAL lock_timeout = '{LOCK_TIMEOUT}'")
            cur.execute(
                "SELECT n.nspname, c.relname FROM pg_class c"
                " JOIN pg_namespace n ON n.oid = c.relnamespace"
                " WHERE c.relkind = 'v' AND (n.nspname = %s OR n.nspname LIKE %s)",
                (analytics, f"{custom}\\_%"),
            )
            views = cur.fetchall()
            shadow = [f"{quote_ansi(s)}.{quote_ansi(v)}" for s, v in views if _shadow(s)]
            if drop and shadow:
                cur.execute(f"DROP VIEW IF EXISTS {', '.join(shadow)} CASCADE")
    except psycopg2.Error as exc:
        raise database_failure("preparing the build's schemas failed", exc) from exc
    finally:
        conn.close()
    return views


def swap(
    settings: Settings, shadows: Sequence[str], on_publish: Callable[[Any], None] | None = None
) -> dt.datetime:
    """Exchange each shadow schema with its live schema in one transaction.

    Returns:
        The publication time (the transaction's).

    Raises:
        DatabaseError: The swap failed and was rolled back: BI still reads the old build.

    """
    pairs = [(s.removesuffix(BUILD_SUFFIX), s) for s in shadows]
    conn = _connect(settings, "publish the build")
    try:
        with conn, conn.cursor() as cur:
            cur.execute(f"SET LOCAL lock_timeout = '{LOCK_TIMEOUT}'")
            cur.execute(
                "SELECT nspname FROM pg_namespace WHERE nspname = ANY(%s)",
                ([name for pair in pairs for name in pair],),
            )
            existing = {r[0] for r in cur.fetchall()}
            # which deployment builds these schemas: another one is refused (`lock.py`)
            owner = OWNER_COMMENT.format(replica=settings.replica_schema)
            for live, shadow in pairs:
                if shadow not in existing:
                    raise RuntimeError(f"the build left no schema {shadow}")
                if live in existing:
                    cur.execute(_rename(live, live + _SWAP_SUFFIX))
                cur.execute(_rename(shadow, live))
                if live in existing:
                    cur.execute(_rename(live + _SWAP_SUFFIX, shadow))
                for name in (live, shadow) if live in existing else (live,):
                    cur.execute(f"COMMENT ON SCHEMA {quote_ansi(name)} IS %s", (owner,))
            role = settings.bi_role
            if role:
                bi = settings.analytics_schema
                cur.execute(f"GRANT USAGE ON SCHEMA {quote_ansi(bi)} TO {quote_ansi(role)}")
                if bi in existing:
                    # the previous build, now the shadow: BI must not see it
                    cur.execute(
                        f"REVOKE ALL ON SCHEMA {quote_ansi(bi + BUILD_SUFFIX)}"
                        f" FROM {quote_ansi(role)}"
                    )
            if on_publish is not None:
                on_publish(cur)
            cur.execute("SELECT transaction_timestamp()")
            published_at = cur.fetchone()[0]
    except PipelineError:
        raise  # the run's own verdict (its lock lost, its deadline passed): rolled back
    except Exception as exc:
        raise database_failure(
            "publishing the build failed (BI still reads the last one)", exc
        ) from exc
    finally:
        conn.close()
    log.info("published %s", ", ".join(live for live, _ in pairs))
    return published_at


def _shadow(schema: str) -> bool:
    return schema.endswith(BUILD_SUFFIX)


def _connect(settings: Settings, purpose: str) -> Any:
    """A psycopg2 connection to Atlas DB for the publication's own statements."""
    import psycopg2

    try:
        return psycopg2.connect(**settings.atlas_connect_args("kimai-atlas-sync publish"))
    except psycopg2.Error as exc:
        raise database_failure(f"cannot connect to Atlas DB to {purpose}", exc) from exc


def _rename(schema: str, to: str) -> str:
    return f"ALTER SCHEMA {quote_ansi(schema)} RENAME TO {quote_ansi(to)}"
