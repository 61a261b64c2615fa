{#- An empty array of the type tag_array_agg returns (for projects without tags). -#}
{% macro empty_tag_array() -%}
    {{ return(adapter.dispatch('empty_tag_array', 'kimai_atlas')()) }}
{%- endmacro %}

{% macro postgres__empty_tag_array() -%}
    cast(array[] as text[])
{%- endmacro %}

{% macro duckdb__empty_tag_array() -%}
    cast([] as varchar[])
{%- endmacro %}

{% macro default__empty_tag_array() -%}
    {{ exceptions.raise_compiler_error("empty_tag_array is implemented for postgres and duckdb only") }}
{%- endmacro %}
