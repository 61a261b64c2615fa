{#-
    One row per timesheet: the incremental copy of int_timesheet_facts, enabled by the var
    timesheet_facts_materialization = table_incremental (environment variable
    ATLAS_TIMESHEET_FACTS_MATERIALIZATION); vw_timesheet_facts then reads this table
    instead of computing every fact on read.

    Kept exactly equal to int_timesheet_facts on every build, change-driven (docs/models.md,
    "Materialization of vw_timesheet_facts"; macros/timesheet_facts_incremental.sql):
      1. pre-hook: in one snapshot, find the candidates, i.e. the timesheets whose fact row
         may have changed since the last build: re-synced timesheets and tag pairs (synced_at
         newer than the last build's watermark), rows of changed dimension rows (a hash of
         exactly the columns the facts read from users, activities, projects with their
         overlays, Kimai tags, compared with the stored one: renames, customer, status,
         taxonomy tags, deletions), and, in the ranges of ids whose stored counts/hashes no
         longer match, deleted timesheets and deleted tag pairs;
      2. this model: the fact rows of the candidates, computed by the view's own SQL
         (timesheet_facts_sql) restricted to their ids, delete+insert on timesheet_id;
      3. post-hook: delete the candidates gone from the replica, store the new state.
    The first build, `--full-refresh` and a missing state compute every row.
    tests/dbt/assert_timesheet_facts_incremental_matches_view.sql checks the result.
-#}
{{
    config(
        enabled=(var('timesheet_facts_materialization', 'view') == 'table_incremental'),
        materialized='incremental',
        incremental_strategy='delete+insert',
        unique_key='timesheet_id',
        on_schema_change='sync_all_columns',
        indexes=[{'columns': ['timesheet_id'], 'unique': True}],
        pre_hook=[
            "{{ set_snapshot_isolation() }}",
            "{{ set_local_work_mem('256MB') }}",
            "{{ timesheet_facts_incremental_prepare() }}",
        ],
        post_hook=["{{ timesheet_facts_incremental_finish() }}"],
    )
}}

-- read by the hooks:
-- depends_on: {{ ref('stg_kimai__timesheets') }}
-- depends_on: {{ ref('stg_kimai__timesheet_tags') }}
-- depends_on: {{ ref('stg_kimai__tags') }}

{%- set temp = timesheet_facts_temp_tables() %}
{%- set candidates = ('select timesheet_id from ' ~ temp.candidates) if is_incremental() else none %}

with

facts as (

    {{ timesheet_facts_sql(candidates) }}

),

tag_sets as (

    select
        timesheet_id,
        bit_xor({{ hash_values(['tag_id']) }}) as tag_set_hash

    from {{ ref('stg_kimai__timesheet_tags') }}
    {%- if candidates %}
    where {{ in_subquery('timesheet_id', candidates) }}
    {%- endif %}
    group by timesheet_id

)

select
    facts.*,
    -- the timesheet's Kimai tag pairs (0: none), to find deleted pairs
    coalesce(tag_sets.tag_set_hash, 0) as tag_set_hash,
    -- the build that wrote this row (the state's build number)
    (select state_count from {{ temp.new_state }} where entity = 'build') as refreshed_build

from facts
left join tag_sets
    on facts.timesheet_id = tag_sets.timesheet_id
