{#-
    Aggregate tag labels into the adapter's array type, ordered: text[] on PostgreSQL
    (Metabase shows it as a list), LIST(VARCHAR) on DuckDB.
-#}
{% macro tag_array_agg(expression, order_by) -%}
    {{ return(adapter.dispatch('tag_array_agg', 'kimai_atlas')(expression, order_by)) }}
{%- endmacro %}

{% macro postgres__tag_array_agg(expression, order_by) -%}
    array_agg({{ expression }} order by {{ order_by }})
{%- endmacro %}

{% macro duckdb__tag_array_agg(expression, order_by) -%}
    list({{ expression }} order by {{ order_by }})
{%- endmacro %}

{% macro default__tag_array_agg(expression, order_by) -%}
    {{ exceptions.raise_compiler_error("tag_array_agg is implemented for postgres and duckdb only") }}
{%- endmacro %}
