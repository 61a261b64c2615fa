-- One row per timesheet: every column of vw_timesheet_facts, computed from the replica and
-- the overlays. vw_timesheet_facts reads this view directly (default) or the incremental
-- table int_timesheet_facts_incremental kept equal to it
-- (var timesheet_facts_materialization).
--
-- The SQL is macros/timesheet_facts.sql (timesheet_facts_sql): the incremental table
-- computes the changed timesheets with the very same SQL, restricted to their ids.

{{ timesheet_facts_sql() }}
