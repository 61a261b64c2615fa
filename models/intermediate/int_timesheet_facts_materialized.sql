{#-
    One row per timesheet: int_timesheet_facts stored as a table, kept equal to it from the
    change log. Enabled by var timesheet_facts_materialization = table_incremental
    (environment variable ATLAS_TIMESHEET_FACTS_MATERIALIZATION); vw_timesheet_facts then
    reads this table instead of computing every fact on read.

    dbt's delete+insert strategy on timesheet_id (docs/models.md, "Materialization of
    vw_timesheet_facts"). Everything is read by the one statement that fills dbt's temporary
    table, so in one snapshot; the delete and insert then read only that table:
      1. `refresh`: the log position and facts SQL hash the table stored decide between
         a refresh of the candidates after that position and a whole recomputation;
      2. `refreshed`: the candidates, the timesheets of those log rows
         (int_timesheet_facts_candidates), of the projects whose columns here differ from
         the project with its overlays now, and the newest timesheet (so every build
         stores the position it read), with their rows from int_timesheet_facts;
      3. or `recomputed`: every row of int_timesheet_facts compared with the stored one,
         only those that differ (and the newest) written;
      4. a timesheet the view no longer returns comes as a row with is_deleted, which
         replaces the stored row and is then removed by the post-hook, in the same
         transaction.
    tests/dbt/assert_timesheet_facts_materialized_matches_view.sql checks the result.

    JIT is off: the planner cannot know whether `refreshed` or `recomputed` runs, so it
    always expects a whole recomputation, and PostgreSQL's JIT then spent ~4.7 s
    compiling the statement of a 21k-row refresh (300k timesheets) that ran in 1.5 s.
-#}
{{
    config(
        enabled=(var('timesheet_facts_materialization', 'view') == 'table_incremental'),
        materialized='incremental',
        incremental_strategy='delete+insert',
        unique_key='timesheet_id',
        on_schema_change='sync_all_columns',
        indexes=[
            {'columns': ['timesheet_id'], 'unique': True},
            {'columns': ['project_id']},
            {'columns': ['change_log_position']},
        ],
        pre_hook=[
            "{{ set_local('work_mem', '256MB') }}",
            "{{ set_local('jit', 'off') }}",
        ],
        post_hook=[
            "delete from {{ this }} where is_deleted and change_log_position"
            ~ " = (select max(change_log_position) from {{ this }})"
        ],
    )
}}

{%- set sql_hash = timesheet_facts_sql_hash() -%}
{#- DuckDB keeps no change log: there every build recomputes every row -#}
{%- set from_log = is_incremental() and timesheet_facts_change_log_kept() -%}
{#- referenced outside the branches, so that dbt records every dependency at parse time -#}
{%- set candidates = ref('int_timesheet_facts_candidates') -%}
{%- set projects = ref('int_projects_joined_to_overlays') -%}
{%- set tags = ref('int_timesheet_tags_aggregated') -%}
{%- set pruned = ref('stg_sync__change_log_pruned') -%}
{%- set replica_timesheets = ref('stg_kimai__timesheets') -%}
{#- compiled without a built project (sqlfluff): the key alone -#}
{%- set columns = relation_columns(ref('int_timesheet_facts')) or ['timesheet_id'] %}
{%- set tag_columns = {} -%}
{%- for column, expression in timesheet_facts_tag_columns().items() -%}
    {%- do tag_columns.update({adapter.quote(column): expression}) -%}
{%- endfor %}

with

changes as (

    select * from {{ ref('stg_sync__change_log') }}

),

{% if is_incremental() -%}

-- the position and facts SQL of the newest stored row
stored as (

    select
        change_log_position,
        facts_sql_hash
    from {{ this }}
    where change_log_position is not null
    order by change_log_position desc
    limit 1

),

{% endif -%}

refresh as (

    select
        cast(coalesce(logged.position, 0) as {{ dbt.type_bigint() }}) as change_log_position,
        cast({{ sql_hash }} as {{ dbt.type_bigint() }}) as facts_sql_hash,
        {%- if from_log %}
        -- every row is recomputed unless the stored rows are current but for the logged
        -- changes: no stored position, another facts SQL (a new column, a changed rule), a
        -- table rewritten or the log recreated, or the log pruned past the position
        coalesce(
            stored.change_log_position is null
            or stored.facts_sql_hash <> {{ sql_hash }}
            or exists (
                select 1 from changes
                where
                    changes.change_id > stored.change_log_position
                    and changes.change = 'rewrite'
            )
            or (
                select coalesce(max(pruned.pruned_through), 0)
                from {{ pruned }} as pruned
            ) > stored.change_log_position,
            true
        ) as recompute_all,
        stored.change_log_position as stored_position
        {%- else %}
            true as recompute_all,
            cast(null as {{ dbt.type_bigint() }}) as stored_position
        {%- endif %}
    from (select max(change_id) as position from changes) as logged
    {%- if is_incremental() %}
    left join stored on 1 = 1
    {%- endif %}

),

{% if from_log -%}

-- the columns the facts take from a project, now: compared with the stored rows, since
-- Atlas's overlays (status, taxonomy tags, customer) change without a log row
projects_now as (

    select
        projects.project_id
        {%- for column, expression in timesheet_facts_project_columns().items() %},
        {{ expression | replace('{p}', 'projects') }} as {{ column }}
        {%- endfor %}
    from {{ projects }} as projects
    where projects.origin = 'kimai'

),

changed_projects as (

    select projects_now.project_id
    from projects_now
    cross join lateral (
        select *
        from {{ this }} as kept
        where kept.project_id = projects_now.project_id
        limit 1
    ) as kept
    where
        {%- for column in timesheet_facts_project_columns() %}
        {{ 'or ' if not loop.first }}kept.{{ column }} is distinct from projects_now.{{ column }}
        {%- endfor %}

),

candidate_ids as (

    select candidates.timesheet_id
    from {{ candidates }} as candidates
    where candidates.change_id > (select stored_position from refresh)

    union

    -- the replica's own key and project index answer these two (a CTE over the timesheets,
    -- read twice, was materialized whole)
    select timesheets.timesheet_id
    from {{ replica_timesheets }} as timesheets
    where {{ in_subquery('timesheets.project_id', 'select project_id from changed_projects') }}

    union

    -- the newest timesheet: every build writes a row, so the table holds the position read
    select max(timesheets.timesheet_id) from {{ replica_timesheets }} as timesheets

),

-- the candidates' rows: one for each candidate, is_deleted where the view returns none
refreshed as (

    select
        candidate_ids.timesheet_id,
        {%- for column in columns if column != adapter.quote('timesheet_id') %}
        {%- if column in tag_columns %}
        {{ tag_columns[column] | replace('{t}', 'tags') }} as {{ column }},
        {%- else %}
        facts.{{ column }},
        {%- endif %}
        {%- endfor %}
        facts.timesheet_id is null as is_deleted
    from candidate_ids
    -- the facts but their tags: without those the view's join to the tag aggregate is
    -- removed, and the tags come from the aggregate filtered on its own key
    left join (
        select {{ columns | reject('in', tag_columns) | join(', ') }}
        from {{ ref('int_timesheet_facts') }}
        where {{ in_subquery('timesheet_id', 'select timesheet_id from candidate_ids') }}
    ) as facts
        on candidate_ids.timesheet_id = facts.timesheet_id
    left join (
        select * from {{ tags }}
        where {{ in_subquery('timesheet_id', 'select timesheet_id from candidate_ids') }}
    ) as tags
        on facts.timesheet_id = tags.timesheet_id
    where
        not (select recompute_all from refresh)
        and candidate_ids.timesheet_id is not null

),

{% endif -%}

{% if is_incremental() -%}

{#- the stored rows hold every column of the view (not so after a change of the facts SQL
    added one): a whole recomputation then writes only the rows whose values differ -#}
{%- set stored_columns = relation_columns(this) -%}
{%- set comparable = (columns | reject('in', stored_columns) | list | length) == 0 %}

-- every current row that is new or whose values differ from the stored one, every stored
-- row the view no longer returns (is_deleted), and the newest timesheet
recomputed as (

    select
        coalesce(computed.timesheet_id, kept.timesheet_id) as timesheet_id,
        {%- for column in columns if column != adapter.quote('timesheet_id') %}
        computed.{{ column }},
        {%- endfor %}
        computed.timesheet_id is null as is_deleted
    from (
        select {{ columns | join(', ') }} from {{ ref('int_timesheet_facts') }}
    ) as computed
    -- the stored side narrow (key and hash), so that it is the hashed side of the join
    full outer join (
        select
            stored_row.timesheet_id,
            {%- if comparable %}
            {{ row_hash('stored_row') }} as row_hash
            {%- else %}
            cast(null as {{ dbt.type_bigint() }}) as row_hash
            {%- endif %}
        from (
            select {{ (columns if comparable else ['timesheet_id']) | join(', ') }}
            from {{ this }}
        ) as stored_row
    ) as kept
        on computed.timesheet_id = kept.timesheet_id
    where
        (select recompute_all from refresh)
        and (
            computed.timesheet_id is null
            or kept.timesheet_id is null
            or kept.row_hash is null
            or {{ row_hash('computed') }} <> kept.row_hash
            or computed.timesheet_id = (
                select max(timesheets.timesheet_id) from {{ replica_timesheets }} as timesheets
            )
        )

),

rows_written as (

    {% if from_log -%}
    select * from refreshed
    union all
    {% endif -%}
    select * from recomputed

)

{%- else %}

    rows_written as (

        select
            facts.*,
            false as is_deleted
        from {{ ref('int_timesheet_facts') }} as facts

    )

{%- endif %}

select
    rows_written.*,
    -- the change log position this build read up to
    refresh.change_log_position,
    -- the facts SQL this row was computed with (timesheet_facts_sql_hash())
    refresh.facts_sql_hash

from rows_written
cross join refresh
