{#-
    The leading integer, 0 when there is none (NULL, '', 'abc'); at most 18 digits (PHP
    would saturate; no contract has such values).
-#}
{% macro php_int(expression) -%}
    {{ return(adapter.dispatch('php_int', 'kimai_atlas')(expression)) }}
{%- endmacro %}

{% macro default__php_int(expression) -%}
    coalesce(cast(substring({{ expression }} from '^\s*([+-]?[0-9]{1,18})') as {{ dbt.type_bigint() }}), 0)
{%- endmacro %}

{% macro duckdb__php_int(expression) -%}
    coalesce(cast(nullif(regexp_extract({{ expression }}, '^\s*([+-]?[0-9]{1,18})', 1), '') as {{ dbt.type_bigint() }}), 0)
{%- endmacro %}
