{#-
    The refresh of int_timesheet_facts_materialized from the change log (docs/models.md,
    "Materialization of vw_timesheet_facts"). Each row of the table stores the log position
    its build read up to and a hash of the facts SQL it was computed with.
-#}

{#- Whether the sync keeps the change log on this adapter (triggers: PostgreSQL only). -#}
{% macro timesheet_facts_change_log_kept() -%}
    {{ return(adapter.dispatch('timesheet_facts_change_log_kept', 'kimai_atlas')()) }}
{%- endmacro %}

{% macro default__timesheet_facts_change_log_kept() -%}
    {{ return(false) }}
{%- endmacro %}

{% macro postgres__timesheet_facts_change_log_kept() -%}
    {{ return(true) }}
{%- endmacro %}


{#- Session-local tables of one build: the plan (one row) and the candidate timesheet ids. -#}
{% macro timesheet_facts_refresh_tables() -%}
    {{ return({
        'refresh': 'timesheet_facts__refresh',
        'candidates': 'timesheet_facts__candidates',
    }) }}
{%- endmacro %}


{#-
    A bigint hash of the SQL the facts are computed with: the raw code of the calling model
    and of int_timesheet_facts with everything upstream of it. Another value means every
    stored row may be stale (a new column, a changed rule), so the table is recomputed.
    Macros are not covered: after changing one the facts use, run `--full-refresh`.
-#}
{% macro timesheet_facts_sql_hash() -%}
    {%- set codes = [model.raw_code] -%}
    {%- set todo = ['model.' ~ project_name ~ '.int_timesheet_facts'] -%}
    {%- set seen = [] -%}
    {#- Jinja has no while: each node is visited once, so the graph's size bounds the loop -#}
    {%- for _ in range(graph.nodes | length) -%}
        {%- if todo -%}
            {%- set unique_id = todo.pop() -%}
            {%- if unique_id not in seen and unique_id in graph.nodes -%}
                {%- do seen.append(unique_id) -%}
                {%- set node = graph.nodes[unique_id] -%}
                {%- do codes.append(unique_id ~ '\n' ~ node.raw_code) -%}
                {%- do todo.extend(node.depends_on.nodes) -%}
            {%- endif -%}
        {%- endif -%}
    {%- endfor -%}
    {{ return(local_md5(codes | sort | join('\n')) [:15] | int(base=16)) }}
{%- endmacro %}


{#-
    Pre-hook of int_timesheet_facts_materialized, after set_snapshot_isolation(): decides
    what this build recomputes, writes the plan and the candidates into the session-local
    tables, and deletes the stored rows about to be rewritten (the model appends them).
-#}
{% macro timesheet_facts_refresh_plan() -%}
    {%- if not execute -%}
        {{ return('') }}
    {%- endif -%}
    {%- set tables = timesheet_facts_refresh_tables() -%}
    {%- set changes = ref('stg_sync__change_log') -%}
    {%- set sql_hash = timesheet_facts_sql_hash() -%}
    {%- for name in tables.values() %}
        {% do run_query('drop table if exists ' ~ name) %}
    {%- endfor %}

    {#- every row is recomputed when the stored rows cannot be trusted to be current but
        for the logged changes -#}
    {%- set reason = namespace(text=none, position=none) -%}
    {%- if not is_incremental() -%}
        {%- set reason.text = 'first build or --full-refresh' -%}
    {%- elif not timesheet_facts_change_log_kept() -%}
        {%- set reason.text = 'no change log on this database' -%}
    {%- else -%}
        {%- set stored = run_query(
            'select change_log_position, facts_sql_hash from ' ~ this
            ~ ' order by change_log_position desc nulls last limit 1'
        ) -%}
        {%- if not stored.rows or stored.rows[0][0] is none -%}
            {%- set reason.text = 'no stored log position' -%}
        {%- elif (stored.rows[0][1] | int) != sql_hash -%}
            {%- set reason.text = 'the facts SQL changed' -%}
        {%- else -%}
            {%- set reason.position = stored.rows[0][0] | int -%}
            {%- set found = run_query(
                'select (select count(*) from ' ~ changes ~ ' where change_id > ' ~ reason.position
                ~ " and change = 'rewrite'), (select coalesce(max(pruned_through), 0) from "
                ~ ref('stg_sync__change_log_pruned') ~ ')'
            ) -%}
            {%- if (found.rows[0][0] | int) > 0 -%}
                {%- set reason.text = 'a replica table was rewritten or the log recreated' -%}
            {%- elif (found.rows[0][1] | int) > reason.position -%}
                {%- set reason.text = 'the log was pruned past the stored position' -%}
            {%- endif -%}
        {%- endif -%}
    {%- endif -%}

    {%- set plan_sql -%}
        create temporary table {{ tables.refresh }} as
        select
            {{ 'true' if reason.text else 'false' }} as recompute_all,
            cast(coalesce((select max(change_id) from {{ changes }}), 0) as {{ dbt.type_bigint() }})
                as change_log_position,
            cast({{ sql_hash }} as {{ dbt.type_bigint() }}) as facts_sql_hash
    {%- endset -%}
    {% do run_query(plan_sql) %}

    {%- if reason.text -%}
        {% do log(this.identifier ~ ": recomputing every row (" ~ reason.text ~ ")", info=true) %}
        {% do run_query(
            'create temporary table ' ~ tables.candidates ~ ' as select cast(null as '
            ~ dbt.type_bigint() ~ ') as timesheet_id where 1 = 0'
        ) %}
        {%- if is_incremental() %}
            {% do run_query('truncate table ' ~ this) %}
        {%- endif %}
        {{ return('') }}
    {%- endif -%}

    {%- set timesheets = ref('stg_kimai__timesheets') -%}
    {%- set candidates_sql -%}
        create temporary table {{ tables.candidates }} as
        with

        changes as (
            select table_name, key_1
            from {{ changes }}
            where change_id > {{ reason.position }}
        ),

        -- the columns the facts take from a project (int_timesheet_facts): they are
        -- compared, since Atlas's overlays (status, taxonomy tags, customer) change
        -- without a log row
        projects_now as (
            select
                projects.project_id
                {%- for column, expression in timesheet_facts_project_columns().items() %},
                {{ expression | replace('{p}', 'projects') }} as {{ column }}
                {%- endfor %}
            from {{ ref('int_projects_joined_to_overlays') }} as projects
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
        )

        -- written or deleted timesheets and tag pairs (key_1 is the timesheet id)
        select key_1 as timesheet_id
        from changes
        where table_name in ('timesheets', 'timesheet_tags')

        union

        select timesheet_id
        from {{ timesheets }}
        where user_id = any(array(select key_1 from changes where table_name = 'users'))

        union

        select timesheet_id
        from {{ timesheets }}
        where activity_id = any(array(select key_1 from changes where table_name = 'activities'))

        union

        select timesheet_id
        from {{ ref('stg_kimai__timesheet_tags') }}
        where tag_id = any(array(select key_1 from changes where table_name = 'tags'))

        union

        select timesheet_id
        from {{ timesheets }}
        where project_id = any(array(select project_id from changed_projects))

        union

        -- every build writes at least one row, so the table always holds the position read
        select max(timesheet_id)
        from {{ timesheets }}
    {%- endset -%}
    {% do run_query(candidates_sql) %}
    {% do run_query(analyze_relation(tables.candidates)) %}
    {% do run_query(
        'delete from ' ~ this ~ ' where ' ~ in_subquery(
            'timesheet_id', 'select timesheet_id from ' ~ tables.candidates
        )
    ) %}
    {%- set counted = run_query('select count(*) from ' ~ tables.candidates) -%}
    {% do log(
        this.identifier ~ ": " ~ counted.rows[0][0] ~ " candidate timesheets from the change log after "
        ~ reason.position, info=true
    ) %}
    {{ return('') }}
{%- endmacro %}
