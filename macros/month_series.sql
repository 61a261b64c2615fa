{#-
    One row per first day of month from `first_month` through `last_month` (both firsts of
    a month, dates), as a set-returning select-list expression of type timestamp: each
    input row of the select yields one output row per month. Dispatched: PostgreSQL's
    generate_series is set-returning; DuckDB's returns a list, unnested.
-#}
{% macro month_series(first_month, last_month) -%}
    {{ return(adapter.dispatch('month_series', 'kimai_atlas')(first_month, last_month)) }}
{%- endmacro %}

{% macro default__month_series(first_month, last_month) -%}
    generate_series(cast({{ first_month }} as timestamp), cast({{ last_month }} as timestamp), interval '1 month')
{%- endmacro %}

{% macro duckdb__month_series(first_month, last_month) -%}
    unnest(generate_series(cast({{ first_month }} as timestamp), cast({{ last_month }} as timestamp), interval 1 month))
{%- endmacro %}
