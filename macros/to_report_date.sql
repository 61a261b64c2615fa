{#-
    A UTC instant as the calendar day in the report zone (Kimai's axis B: a record belongs
    to the day, week, month and year in which it starts, seen from the viewer's zone).
-#}
{% macro to_report_date(timestamp_expression) -%}
    cast({{ to_local_timestamp(timestamp_expression, report_timezone()) }} as date)
{%- endmacro %}
