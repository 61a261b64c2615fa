"""The demo and the Kimai test fixtures: everything outside the sync itself.

* `runner`: ``python -m pipelines.run demo``, the whole product end to end on embedded
  databases (SQLite Kimai, DuckDB Atlas DB), with a simulated day of Kimai activity per run.
* `kimai_data`: the Kimai tables the product replicates or will (timesheets and their
  master data, teams and membership, user preferences, system configuration) with
  MySQL/MariaDB and SQLite DDL, realistic data at any scale, fast loading, and `build_kimai`
  for a ready database.
* `kimai_actions`: changes made the way Kimai 2.66 makes them (what bumps
  ``timesheet.modified_at`` and what does not, hard deletes with FK cascades, team,
  preference and setting saves), and a read-only MariaDB login without access to the secret
  user columns.
* `atlas_overlays`: Atlas's overlay tables (project overrides, taxonomy, payments) with
  generated rows.

Tests and the benchmark use these; the sync never imports them.
"""
