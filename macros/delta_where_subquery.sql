{#-
    The relation a generic data test reads. dbt's own (`where` config) unless the runner
    builds a delta (environment variable ATLAS_BUILD_DELTA = on, read only while executing,
    so that a delta build keeps dbt's parse): then a test of a model whose meta names a
    `delta_key` reads only the timesheets `delta_test_keys` gives, those the change log
    says may have changed (docs/models.md, "Delta builds"); every other row was tested by
    an earlier build and did not change.

    The keys are read once per test and written into it as a constant array: the planner
    then knows how many come and pushes `key = any(...)` into the views (through their
    joins and the groups of a per-timesheet aggregate) down to the replica's primary key.
    A subquery (`in (select ...)`) cannot be pushed below an aggregate, and in_subquery's
    `= any(array(select ...))` hides the count: the planner took an array for ten keys and
    joined a relationships test's 30,000 children to a million parents by nested loop.
    Above `delta_test_keys_max_literal` keys the test takes them by semi-join instead.
-#}
{% macro postgres__get_where_subquery(relation) -%}
    {%- set base = dbt.default__get_where_subquery(relation) -%}
    {%- set attached = graph.nodes.get(model.attached_node) if execute and model.attached_node else none -%}
    {%- set key = (attached.config.meta or {}).get('delta_key') if attached else none -%}
    {%- set keys = delta_test_keys() if key else none -%}
    {%- if keys is not none -%}
        {%- do return('(select * from ' ~ base ~ ' where ' ~ key ~ ' ' ~ keys ~ ') dbt_delta') -%}
    {%- endif -%}
    {%- do return(base) -%}
{%- endmacro %}

{#- The condition on a test's key that keeps the timesheets a delta build tests, or none.
    With table_incremental: the timesheets this build rewrote. With view: when the runner
    gives the last build's change-log position (ATLAS_BUILD_DELTA_SINCE: only timesheets
    and tag pairs changed since), the timesheets the log names after it. -#}
{% macro delta_test_keys() -%}
    {%- if env_var('ATLAS_BUILD_DELTA', '') != 'on' -%}
        {%- do return(none) -%}
    {%- endif -%}
    {%- if var('timesheet_facts_materialization', 'view') == 'table_incremental' -%}
        {%- set node = graph.nodes.get('model.' ~ project_name ~ '.int_timesheet_facts_materialized') -%}
        {%- set facts = node.relation_name -%}
        {%- set rewritten = 'select timesheet_id from ' ~ facts ~ ' where change_log_position'
            ~ ' = (select max(change_log_position) from ' ~ facts ~ ')' -%}
    {%- elif env_var('ATLAS_BUILD_DELTA_SINCE', '') != '' -%}
        {%- set changes = graph.nodes.get('model.' ~ project_name ~ '.stg_sync__change_log').relation_name -%}
        {%- set rewritten = 'select distinct key_1 as timesheet_id from ' ~ changes
            ~ ' where change_id > ' ~ (env_var('ATLAS_BUILD_DELTA_SINCE') | int)
            ~ " and table_name in ('timesheets', 'timesheet_tags')" -%}
    {%- else -%}
        {%- do return(none) -%}
    {%- endif -%}
    {%- set most = var('delta_test_keys_max_literal', 50000) | int -%}
    {#- one row, the ids as text: dbt turns every fetched row into Python objects -#}
    {%- set found = run_query(
        "select count(*), coalesce(string_agg(cast(timesheet_id as text), ','), '')"
        ~ ' from (' ~ rewritten ~ ' limit ' ~ (most + 1) ~ ') as rewritten'
    ).rows[0] -%}
    {%- if found[0] > most -%}
        {%- do return('in (' ~ rewritten ~ ')') -%}
    {%- endif -%}
    {%- do return("= any('{" ~ found[1] ~ "}'::bigint[])") -%}
{%- endmacro %}
