{#-
    Seconds as decimal hours: numeric(18, 6), i.e. seconds / 3600 rounded to 6 decimals
    (under 0.004 s). Aggregates convert the summed seconds, never sum rounded hours.
-#}
{% macro seconds_to_hours(expression) -%}
    cast(cast({{ expression }} as numeric(20, 6)) / 3600 as numeric(18, 6))
{%- endmacro %}
