{#-
    Today in the report zone (var report_timezone), when the query runs: the "current
    month" of a monthly budget and the end of the zero-filled series of the views.
-#}
{% macro report_today() -%}
    {{ to_report_date('current_timestamp') }}
{%- endmacro %}
