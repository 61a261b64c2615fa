"""The build gate: a scheduled run whose build inputs did not change does no dbt work.

A dbt build reads four things: the replica, Atlas's overlay tables, the dbt project (with
the settings it is built under) and nothing else. A run records a digest of each
(`BuildInputs`) with its build. The next scheduled run (`run`, sync then build) compares:

* the replica's position: the newest position of the change log (`pipelines.record.
  changelog`), which every committed write of a replica table advances, in the same
  transaction; a pruned log keeps its last position;
* the overlays: an order-independent digest of every row of every overlay source table
  the dbt project declares (Atlas's application writes them outside any lock of ours);
* the project: every file under the project's model, macro and test paths, its
  `dbt_project.yml`, the profile, the dbt and product versions and the settings the build
  reads (schemas, BI role, report time zone, facts materialization);
* the last build: it must have ended green (published, or itself unchanged), BI's views
  must all be there, and the last real build must be younger than
  ``ATLAS_BUILD_MAX_AGE_HOURS`` (a few checks read the clock: "more than a year ahead of
  the build", the last 31 days).

When all four match, the run records its build as ``unchanged``, confirmed current now,
and imports no dbt. Everything BI reads stays as it is: the views read the replica live,
and the tables a build materializes derive from inputs that did not change.

When the replica alone changed, the build is a **delta build** (`Verdict.delta`): every
model (only the tables when the shadow schemas already hold this project's views:
`Verdict.keep_views`), the data tests that check rows one by one (with the incremental facts
table: only on the timesheets the build rewrote), and not the set-level checks (unique keys,
totals across marts, row counts), which wait for the next **full audit**. A build is a full
audit when the project, the overlays or the settings changed, when the change log rewrote
or pruned past the last build's position, after a failed build, when the last build is
older than ``ATLAS_BUILD_MAX_AGE_HOURS``, and once the last full audit is older than
``ATLAS_FULL_AUDIT_HOURS`` (the nightly one).

The embedded DuckDB has no change log, so there every run builds.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import logging
from dataclasses import asdict, dataclass, fields
from pathlib import Path

from pipelines.adapters.layout import quote_ansi
from pipelines.adapters.replica import PostgresReplica, Replica
from pipelines.config import Settings
from pipelines.record.audit import (
    last_build,
    last_full_audit_at,
    last_published_at,
    publication_before_last,
)
from pipelines.record.changelog import LOG_TABLE, PRUNED_TABLE
from pipelines.transform import project_digest, project_dir, read_yaml

log = logging.getLogger("pipelines.build_gate")

OVERLAY_SOURCE = "atlas"
"""The dbt source whose tables are Atlas's overlays (models/staging/atlas)."""

GREEN = ("published", "unchanged")
"""Build statuses after which BI reads a build that passed every test."""


@dataclass(frozen=True)
class BuildInputs:
    """Digests of what a dbt build reads; equal inputs give an equal build."""

    replica: str
    """The change log's position (its newest change, or the last pruned one)."""
    overlays: str
    """Digest of every overlay table's rows."""
    project: str
    """Digest of the dbt project's files, versions and settings."""
    audit: str = "full"
    """``full`` or ``delta``: which data tests the build ran (not an input: never compared)."""

    def to_json(self) -> str:
        """The form stored in the run audit (``sync_runs.build_inputs``)."""
        return json.dumps(asdict(self), sort_keys=True)

    @classmethod
    def from_json(cls, text: str | None) -> BuildInputs | None:
        """The inputs stored by a run; None when there are none or they do not parse."""
        try:
            return cls(**json.loads(text)) if text else None
        except (TypeError, ValueError):
            return None

    def changed_since(self, before: BuildInputs) -> list[str]:
        """The names of the inputs that differ from `before` (empty: none)."""
        return [
            f.name
            for f in fields(self)
            if f.name != "audit" and getattr(before, f.name) != getattr(self, f.name)
        ]


@dataclass(frozen=True)
class Verdict:
    """Whether a run must build, and why (for its log line)."""

    build: bool
    reason: str
    delta: bool = False
    """A delta build: row-level data tests only (the module's docstring)."""
    keep_views: bool = False
    """A delta build whose shadow schemas hold views built from this very project."""
    changed_tables: tuple[str, ...] = ()
    """A delta build: the replica tables the change log shows written since the last build."""
    since: str | None = None
    """A delta build: the change-log position the last (green) build read."""


def read_inputs(settings: Settings, replica: Replica) -> BuildInputs | None:
    """The current build inputs; None where they cannot be known (no change log).

    Raises:
        psycopg2.Error: Atlas DB refused a query (the caller builds anyway).

    """
    if not isinstance(replica, PostgresReplica):
        return None
    position = _replica_position(replica)
    if position is None:
        return None
    project = project_dir(settings)
    return BuildInputs(
        replica=position,
        overlays=_overlay_digest(replica, settings.overlay_schema, project),
        project=project_digest(settings, project),
    )


def decide(
    settings: Settings, replica: Replica, runs_table: str, inputs: BuildInputs | None
) -> Verdict:
    """Whether this run must build, comparing `inputs` with the last build's."""
    if inputs is None:
        return Verdict(True, "no change log to compare with")
    last = last_build(replica, runs_table)
    if last is None:
        return Verdict(True, "no build yet")
    if last.status not in GREEN:
        return Verdict(True, f"the last build {last.status}")
    before = BuildInputs.from_json(last.inputs)
    if before is None:
        return Verdict(True, "the last build recorded no inputs")
    changed = inputs.changed_since(before)
    if changed == ["replica"]:
        full = _full_audit_due(settings, replica, runs_table, before.replica)
        if full is None:
            shadow = BuildInputs.from_json(publication_before_last(replica, runs_table))
            keep = shadow is not None and shadow.project == inputs.project
            tables = changed_tables(replica, before.replica)
            return Verdict(
                True,
                "replica changed: a delta build",
                delta=True,
                keep_views=keep,
                changed_tables=tables,
                since=before.replica,
            )
        return Verdict(True, f"replica changed; a full audit: {full}")
    if changed:
        return Verdict(True, f"{' and '.join(changed)} changed")
    old = _too_old(settings, replica, runs_table)
    if old is not None:
        return Verdict(True, old)
    missing = _missing_marts(replica, settings.analytics_schema, project_dir(settings))
    if missing:
        return Verdict(True, f"BI's {', '.join(missing[:3])} missing")
    return Verdict(False, f"nothing it reads changed since the build of run {last.run_id}")


def _too_old(settings: Settings, replica: Replica, runs_table: str) -> str | None:
    """Why the last real build is too old to skip or narrow the next one, or None."""
    built = last_published_at(replica, runs_table)
    max_age = dt.timedelta(hours=settings.build_max_age_hours)
    if built is None or dt.datetime.now(dt.UTC) - built >= max_age:
        return f"the last build is older than {settings.build_max_age_hours:g} h"
    return None


def _full_audit_due(
    settings: Settings, replica: Replica, runs_table: str, position: str
) -> str | None:
    """Why a build after the replica changed must be a full audit, or None (a delta build).

    `position` is the change-log position the last (green) build read.
    """
    if settings.full_audit_hours <= 0:
        return "ATLAS_FULL_AUDIT_HOURS is 0"
    audited = last_full_audit_at(replica, runs_table)
    if audited is None:
        return "none yet"
    if dt.datetime.now(dt.UTC) - audited >= dt.timedelta(hours=settings.full_audit_hours):
        return f"the last is older than {settings.full_audit_hours:g} h"
    old = _too_old(settings, replica, runs_table)
    if old is not None:
        return old
    log_table, pruned = replica.qualified(LOG_TABLE), replica.qualified(PRUNED_TABLE)
    rewritten = replica.query(
        f"SELECT EXISTS (SELECT 1 FROM {log_table} WHERE change_id > %s AND change = 'rewrite'),"
        f" coalesce((SELECT max(pruned_through) FROM {pruned}), 0) > %s",
        (int(position), int(position)),
    )[0]
    if rewritten[0]:
        return "a table was rewritten"
    if rewritten[1]:
        return "the change log was pruned past the last build"
    return None


def changed_tables(replica: Replica, position: str) -> tuple[str, ...]:
    """The replica tables (registry names) the change log shows written after `position`."""
    rows = replica.query(
        f"SELECT DISTINCT table_name FROM {replica.qualified(LOG_TABLE)} WHERE change_id > %s",
        (int(position),),
    )
    return tuple(sorted(str(r[0]) for r in rows))


def _replica_position(replica: Replica) -> str | None:
    log_table, pruned = replica.qualified(LOG_TABLE), replica.qualified(PRUNED_TABLE)
    exists = replica.query("SELECT to_regclass(%s), to_regclass(%s)", (log_table, pruned))
    if None in exists[0]:
        return None
    row = replica.query(
        f"SELECT greatest((SELECT max(change_id) FROM {log_table}),"
        f" (SELECT max(pruned_through) FROM {pruned}))"
    )
    return str(row[0][0]) if row[0][0] is not None else None


def overlay_tables(project: Path) -> list[str]:
    """The tables of the project's overlay source (`OVERLAY_SOURCE`), as dbt names them."""
    tables: list[str] = []
    for path in sorted((project / "models").rglob("_*sources.yml")):
        for source in (read_yaml(path) or {}).get("sources") or []:
            if source.get("name") == OVERLAY_SOURCE:
                tables += [t.get("identifier") or t["name"] for t in source.get("tables") or []]
    return tables


def _overlay_digest(replica: Replica, schema: str, project: Path) -> str:
    """Digest of every row of every overlay table, whatever order the rows come in.

    Each row's text form is hashed (md5, 64 bits of it) and the hashes are summed: one pass,
    no sort. A missing table digests as missing (the build will say what is wrong).
    """
    parts = []
    for table in overlay_tables(project):
        name = f"{quote_ansi(schema)}.{quote_ansi(table)}"
        if replica.query("SELECT to_regclass(%s)", (name,))[0][0] is None:
            parts.append(f"{table}:missing")
            continue
        count, total = replica.query(
            "SELECT count(*), coalesce(sum(('x' || left(md5(t::text), 16))::bit(64)::bigint"
            f"::numeric), 0) FROM {name} AS t"
        )[0]
        parts.append(f"{table}:{count}:{total}")
    return hashlib.sha256("\n".join(parts).encode()).hexdigest()


def _missing_marts(replica: Replica, analytics_schema: str, project: Path) -> list[str]:
    """The project's vw_* views that the live BI schema lacks."""
    names = sorted(p.stem for p in (project / "models" / "marts").glob("vw_*.sql"))
    found = replica.query(
        "SELECT c.relname FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace"
        " WHERE n.nspname = %s AND c.relname = ANY(%s)",
        (analytics_schema, names),
    )
    present = {r[0] for r in found}
    return [n for n in names if n not in present]
