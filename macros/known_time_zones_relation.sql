{#- The relation listing the time zone names the database knows (a `name` column). -#}
{% macro known_time_zones_relation() -%}
    {{ return(adapter.dispatch('known_time_zones_relation', 'kimai_atlas')()) }}
{%- endmacro %}

{% macro default__known_time_zones_relation() -%}
    pg_catalog.pg_timezone_names
{%- endmacro %}

{% macro duckdb__known_time_zones_relation() -%}
    pg_timezone_names()
{%- endmacro %}
