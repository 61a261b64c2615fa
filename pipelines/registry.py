"""The one declaration of what is replicated from Kimai, and how.

Everything else (extract, delete detection, reconciliation, dbt sources, tests) reads
this module. The facts behind each entry are Kimai 2.x's schema: only timesheets have a
change column (`modified_at`); every table is hard-deleted, with FK cascades.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

SyncMode = Literal["incremental", "full", "pairs"]
"""How a table is kept equal to Kimai on every run.

* ``incremental``: re-read the rows whose cursor is at or after the stored cursor minus an
  overlap window, plus every key Kimai has and the replica lacks; merge what differs.
* ``full``: read the whole table, merge what differs (the tables are small).
* ``pairs``: a table whose every column is its key; compare the key sets and apply.

Every mode also compares the full key sets and deletes what Kimai no longer has.
"""

SYNCED_AT = "synced_at"
"""Replica column: when the row was last written by a sync (UTC)."""

DATA_ISSUES = "data_issues"
"""Replica column: the data rules the row was read under (NULL: copied as it is).

One line per issue, ``rule|column|raw`` (see `pipelines.adapters.layout`); BI lists them in
``vw_data_issues``."""


@dataclass(frozen=True)
class Reference:
    """A foreign key of a Kimai table: `column` holds the id of a row of table `parent`.

    Kimai changes some of them silently (its "delete and move records to" action rewrites
    them by bulk UPDATE without bumping ``modified_at``), so a run checks them; see
    `pipelines.sync.orphans`.
    """

    column: str
    parent: str
    """Short name of the referenced table (its key is one ``id`` column)."""


@dataclass(frozen=True)
class RowFilter:
    """An allow-list of rows: only those whose `column` holds one of `values` leave Kimai.

    For Kimai's key/value tables (user preferences, system configuration), where the
    business-confidential and secret entries (rates, mail, LDAP and SAML settings, plugin
    keys) are rows, not columns. Names are compared exactly (case and all), and the filter
    is part of every query the product sends for the table, so other rows are never read.
    """

    column: str
    values: frozenset[str]


@dataclass(frozen=True)
class TableSpec:
    """How one Kimai table is replicated.

    Attributes:
        name: Short name used on the command line and in logs (``timesheets``).
        kimai_table: Kimai table name without the configurable prefix (``timesheet``).
        replica_table: Table name in the replica schema.
        primary_key: Key columns, in Kimai's order.
        sync: How changes are found, see `SyncMode`.
        cursor: Change column for ``incremental`` tables.
        excluded_columns: Columns never selected from Kimai (secrets, security metadata).
        allowed_columns: When set, the only Kimai columns ever selected (an allow-list):
            a column Kimai adds later is not replicated, and each run warns about it once.
            None follows Kimai's columns (the other tables, whose new columns are data).
        references: Foreign keys to other registry tables.
        allowed_rows: When set, the only rows ever read (`RowFilter`); a row leaving the
            list is deleted from the replica like a row Kimai deleted.

    """

    name: str
    kimai_table: str
    replica_table: str
    primary_key: tuple[str, ...]
    sync: SyncMode
    cursor: str | None = None
    excluded_columns: frozenset[str] = frozenset()
    allowed_columns: frozenset[str] | None = None
    references: tuple[Reference, ...] = ()
    bi_indexes: tuple[str, ...] = ()
    allowed_rows: RowFilter | None = None

    def kimai_name(self, prefix: str) -> str:
        """Return the Kimai table name with `prefix` applied."""
        return f"{prefix}{self.kimai_table}"


# The users' columns that are replicated. Kimai has added security
# columns before (api_token, totp_secret, signature_date), so users are replicated by
# allow-list: a new column stays in Kimai until someone adds it here.
USER_COLUMNS = frozenset(
    {
        "id",
        "username",
        "email",
        "alias",
        "enabled",
        "registration_date",
        "title",
        "avatar",
        "roles",
        "last_login",
        "auth",
        "color",
        "account",
        "totp_enabled",
        "system_account",
        "supervisor_id",
    }
)

# Secrets and security metadata of Kimai's users table, known and never selected (no warning).
USER_SECRET_COLUMNS = frozenset(
    {
        "password",
        "api_token",
        "totp_secret",
        "confirmation_token",
        "password_requested_at",
        "signature_date",
    }
)

# The user preferences BI needs (Kimai 2.66: `App\Entity\UserPreference`, `App\Entity\User`,
# `App\WorkingTime\Calculator\WorkingTimeCalculatorDay`): the zone and week start Kimai's
# screens use, and the working-time contract. Never `hourly_rate`/`internal_rate` (business
# confidential) or anything else a user or plugin stores there.
USER_PREFERENCE_NAMES = frozenset(
    {
        "timezone",
        "first_weekday",
        "work_contract_type",
        "work_monday",
        "work_tuesday",
        "work_wednesday",
        "work_thursday",
        "work_friday",
        "work_saturday",
        "work_sunday",
        "holidays",
        "public_holiday_group",
        "work_start_day",
        "work_last_day",
    }
)

# System settings BI needs. Kimai keeps every setting changed from its default in this
# table, mail, LDAP, SAML and plugin secrets included: only the listed names are read.
CONFIGURATION_NAMES = frozenset({"company.financial_year"})

TABLES: tuple[TableSpec, ...] = (
    TableSpec("customers", "customers", "replica_kimai_customers", ("id",), "full"),
    TableSpec(
        "projects",
        "projects",
        "replica_kimai_projects",
        ("id",),
        "full",
        references=(Reference("customer_id", "customers"),),
    ),
    TableSpec(
        "activities",
        "activities",
        "replica_kimai_activities",
        ("id",),
        "full",
        references=(Reference("project_id", "projects"),),
    ),
    TableSpec(
        "users",
        "users",
        "replica_kimai_users",
        ("id",),
        "full",
        excluded_columns=USER_SECRET_COLUMNS,
        allowed_columns=USER_COLUMNS,
    ),
    TableSpec("tags", "tags", "replica_kimai_tags", ("id",), "full"),
    TableSpec(
        "timesheets",
        "timesheet",
        "replica_kimai_timesheets",
        ("id",),
        "incremental",
        cursor="modified_at",
        references=(
            Reference("user", "users"),
            Reference("project_id", "projects"),
            Reference("activity_id", "activities"),
        ),
        bi_indexes=("start_time", "end_time"),
    ),
    TableSpec(
        "timesheet_tags",
        "timesheet_tags",
        "replica_kimai_timesheet_tags",
        ("timesheet_id", "tag_id"),
        "pairs",
        references=(Reference("timesheet_id", "timesheets"), Reference("tag_id", "tags")),
    ),
    TableSpec("teams", "teams", "replica_kimai_teams", ("id",), "full"),
    TableSpec(
        "users_teams",
        "users_teams",
        "replica_kimai_users_teams",
        ("id",),
        "full",
        references=(Reference("user_id", "users"), Reference("team_id", "teams")),
    ),
    TableSpec(
        "user_preferences",
        "user_preferences",
        "replica_kimai_user_preferences",
        ("id",),
        "full",
        references=(Reference("user_id", "users"),),
        allowed_rows=RowFilter("name", USER_PREFERENCE_NAMES),
    ),
    TableSpec(
        "configuration",
        "configuration",
        "replica_kimai_configuration",
        ("id",),
        "full",
        allowed_rows=RowFilter("name", CONFIGURATION_NAMES),
    ),
)

TABLES_BY_NAME: dict[str, TableSpec] = {t.name: t for t in TABLES}


def select_tables(names: list[str] | None) -> list[TableSpec]:
    """Return the specs for the given short names (all tables when empty), in registry order.

    Raises:
        KeyError: A name is not in the registry; the message lists the valid names.

    """
    if not names:
        return list(TABLES)
    unknown = [n for n in names if n not in TABLES_BY_NAME]
    if unknown:
        valid = ", ".join(TABLES_BY_NAME)
        raise KeyError(f"unknown table {', '.join(unknown)} (valid: {valid})")
    wanted = set(names)
    return [t for t in TABLES if t.name in wanted]
