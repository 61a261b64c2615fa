{#-
    The relation a generic data test reads. dbt's own (`where` config) unless the runner
    builds a delta (environment variable ATLAS_BUILD_DELTA = on, read only while executing,
    so that a delta build keeps dbt's saved parse) with the incremental facts table: then a
    test of a model whose meta names a `delta_key` reads only the timesheets this build
    wrote into int_timesheet_facts_materialized (those carry the build's log position).
    Those are the timesheets the change log says may have changed (docs/models.md,
    "Delta builds"); every other row was tested by an earlier build and did not change.
    A semi-join (`in`), not in_subquery's `= any(array(...))`: the planner then knows how
    many keys come, where it took an array for ten and joined a relationships test's 30,000
    children to a million parents by nested loop.
-#}
{% macro postgres__get_where_subquery(relation) -%}
    {%- set base = dbt.default__get_where_subquery(relation) -%}
    {%- set keys = delta_test_keys() if execute else none -%}
    {%- set attached = graph.nodes.get(model.attached_node) if execute and model.attached_node else none -%}
    {%- set key = (attached.config.meta or {}).get('delta_key') if attached else none -%}
    {%- if keys and key -%}
        {%- do return('(select * from ' ~ base ~ ' where ' ~ key ~ ' in (' ~ keys ~ ')) dbt_delta') -%}
    {%- endif -%}
    {%- do return(base) -%}
{%- endmacro %}

{#- SQL returning the timesheet ids a delta build tests, or none (test every row). -#}
{% macro delta_test_keys() -%}
    {%- if env_var('ATLAS_BUILD_DELTA', '') != 'on'
        or var('timesheet_facts_materialization', 'view') != 'table_incremental' -%}
        {%- do return(none) -%}
    {%- endif -%}
    {%- set node = graph.nodes.get('model.' ~ project_name ~ '.int_timesheet_facts_materialized') -%}
    {%- set facts = node.relation_name -%}
    {%- do return(
        'select timesheet_id from ' ~ facts ~ ' where change_log_position'
        ~ ' = (select max(change_log_position) from ' ~ facts ~ ')'
    ) -%}
{%- endmacro %}
