{#-
    `expression` is one of the values the one-column query `subquery` returns. PostgreSQL:
    `= any(array(subquery))`, a filter the planner pushes into views and answers with an
    index scan (an IN (subquery) semi-join would scan the whole table behind a view, and
    reads statistics it does not have for a temporary table); elsewhere `in (subquery)`.
-#}
{% macro in_subquery(expression, subquery) -%}
    {{ return(adapter.dispatch('in_subquery', 'kimai_atlas')(expression, subquery)) }}
{%- endmacro %}

{% macro default__in_subquery(expression, subquery) -%}
    {{ expression }} in ({{ subquery }})
{%- endmacro %}

{% macro postgres__in_subquery(expression, subquery) -%}
    {{ expression }} = any(array({{ subquery }}))
{%- endmacro %}
