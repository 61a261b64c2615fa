{#-
    A UTC instant (timestamptz) as the wall-clock time in an IANA time zone given per row
    (a timestamp without time zone), e.g. Kimai's per-timesheet `timezone`.
-#}
{% macro to_local_timestamp(timestamp_expression, timezone_expression) -%}
    {{ return(adapter.dispatch('to_local_timestamp', 'kimai_atlas')(timestamp_expression, timezone_expression)) }}
{%- endmacro %}

{% macro default__to_local_timestamp(timestamp_expression, timezone_expression) -%}
    ({{ timestamp_expression }} at time zone {{ timezone_expression }})
{%- endmacro %}

{% macro duckdb__to_local_timestamp(timestamp_expression, timezone_expression) -%}
    timezone({{ timezone_expression }}, {{ timestamp_expression }})
{%- endmacro %}
