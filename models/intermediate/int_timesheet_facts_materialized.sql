{#-
    One row per timesheet: int_timesheet_facts stored as a table, kept equal to it from the
    change log. Enabled by var timesheet_facts_materialization = table_incremental
    (environment variable ATLAS_TIMESHEET_FACTS_MATERIALIZATION); vw_timesheet_facts then
    reads this table instead of computing every fact on read.

    Each build (docs/models.md, "Materialization of vw_timesheet_facts"), in one snapshot:
      1. pre-hook timesheet_facts_refresh_plan(): reads the log position and facts SQL hash
         the table stored, and decides: recompute every row, or only the candidates, the
         timesheets whose fact row may differ (mapped from the change log in plain SQL:
         written or deleted timesheets and tag pairs; the timesheets of changed users,
         activities and tags; the timesheets of projects whose project columns in the table
         differ from the project with its Atlas overlays now). It deletes the rows about to
         be rewritten;
      2. this model: appends the fact rows of the candidates (or of all), selected from
         int_timesheet_facts.
    tests/dbt/assert_timesheet_facts_materialized_matches_view.sql checks the result.
-#}
{{
    config(
        enabled=(var('timesheet_facts_materialization', 'view') == 'table_incremental'),
        materialized='incremental',
        incremental_strategy='append',
        on_schema_change='sync_all_columns',
        indexes=[
            {'columns': ['timesheet_id'], 'unique': True},
            {'columns': ['project_id']},
        ],
        pre_hook=[
            "{{ set_snapshot_isolation() }}",
            "{{ set_local_work_mem('256MB') }}",
            "{{ timesheet_facts_refresh_plan() }}",
        ],
    )
}}

-- read by the pre-hook:
-- depends_on: {{ ref('stg_sync__change_log') }}
-- depends_on: {{ ref('stg_sync__change_log_pruned') }}
-- depends_on: {{ ref('stg_kimai__timesheets') }}
-- depends_on: {{ ref('stg_kimai__timesheet_tags') }}
-- depends_on: {{ ref('int_projects_joined_to_overlays') }}

{%- set plan = timesheet_facts_refresh_tables() %}

with

facts as (

    {% if is_incremental() -%}
    -- one branch runs: PostgreSQL evaluates each one-time filter before its scan
    select * from {{ ref('int_timesheet_facts') }}
    where (select recompute_all from {{ plan.refresh }})

    union all

    select * from {{ ref('int_timesheet_facts') }}
    where not (select recompute_all from {{ plan.refresh }})
        and {{ in_subquery('timesheet_id', 'select timesheet_id from ' ~ plan.candidates) }}
    {%- else %}
        select * from {{ ref('int_timesheet_facts') }}
    {%- endif %}

)

select
    facts.*,
    -- the change log position this build read up to
    refresh.change_log_position,
    -- the facts SQL this row was computed with (timesheet_facts_sql_hash())
    refresh.facts_sql_hash

from facts
cross join {{ plan.refresh }} as refresh
