{#- The date of year, month and day (integers), an out-of-range day carried as PHP does. -#}
{% macro date_from_parts(year, month, day) -%}
    cast(make_date({{ year }}, {{ month }}, 1) + ({{ day }} - 1) as date)
{%- endmacro %}
