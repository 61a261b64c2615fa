{#- The text value of a top-level key of a JSON column (NULL when absent). -#}
{% macro json_text(json_expression, key) -%}
    {{ return(adapter.dispatch('json_text', 'kimai_atlas')(json_expression, key)) }}
{%- endmacro %}

{% macro default__json_text(json_expression, key) -%}
    ({{ json_expression }} ->> '{{ key }}')
{%- endmacro %}

{% macro duckdb__json_text(json_expression, key) -%}
    json_extract_string({{ json_expression }}, '$.{{ key }}')
{%- endmacro %}
