{#-
    The model the BI views read the fact rows from: int_timesheet_facts (computed on read,
    var timesheet_facts_materialization = view, the default) or
    int_timesheet_facts_materialized (table_incremental). Any other value is an error.
-#}
{% macro timesheet_facts_model() -%}
    {%- set mode = var('timesheet_facts_materialization', 'view') -%}
    {%- if mode not in ('view', 'table_incremental') -%}
        {{ exceptions.raise_compiler_error(
            "var timesheet_facts_materialization must be 'view' or 'table_incremental', got '" ~ mode ~ "'"
        ) }}
    {%- endif -%}
    {{ return('int_timesheet_facts_materialized' if mode == 'table_incremental' else 'int_timesheet_facts') }}
{%- endmacro %}
