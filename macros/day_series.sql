{#-
    One row per day from `first_day` through `last_day` (dates), as a set-returning
    select-list expression of type timestamp (see month_series).
-#}
{% macro day_series(first_day, last_day) -%}
    {{ return(adapter.dispatch('day_series', 'kimai_atlas')(first_day, last_day)) }}
{%- endmacro %}

{% macro default__day_series(first_day, last_day) -%}
    generate_series(cast({{ first_day }} as timestamp), cast({{ last_day }} as timestamp), interval '1 day')
{%- endmacro %}

{% macro duckdb__day_series(first_day, last_day) -%}
    unnest(generate_series(cast({{ first_day }} as timestamp), cast({{ last_day }} as timestamp), interval 1 day))
{%- endmacro %}
