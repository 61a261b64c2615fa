{#- The ISO weekday of a date: 1 = Monday … 7 = Sunday (PHP's format('N')). -#}
{% macro iso_weekday(date_expression) -%}
    cast(extract(isodow from {{ date_expression }}) as integer)
{%- endmacro %}
