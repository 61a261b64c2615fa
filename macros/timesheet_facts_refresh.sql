{#-
    Helpers of int_timesheet_facts_materialized (docs/models.md, "Materialization of
    vw_timesheet_facts"): whether the adapter keeps the change log, and the hash of the
    facts SQL each row stores.
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
