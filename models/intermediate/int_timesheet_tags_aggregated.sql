-- One row per timesheet with at least one Kimai tag: the tag names joined by ', ' in name
-- order (case-insensitive; Kimai tag names are unique case-insensitively), hidden tags
-- included.
--
-- The SQL is macros/timesheet_facts.sql (aggregate_timesheet_tags), shared with the
-- incremental facts table, which aggregates the tag pairs of changed timesheets only.

{{ aggregate_timesheet_tags(ref('stg_kimai__timesheet_tags')) }}
