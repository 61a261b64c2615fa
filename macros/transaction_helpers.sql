{#-
    Pre-hook, first statement of a model's transaction: every later statement of the
    transaction reads the same snapshot (PostgreSQL: REPEATABLE READ; it must come before
    any query). DuckDB transactions are snapshots already: nothing to do.
-#}
{% macro set_snapshot_isolation() -%}
    {{ return(adapter.dispatch('set_snapshot_isolation', 'kimai_atlas')()) }}
{%- endmacro %}

{% macro default__set_snapshot_isolation() -%}
{%- endmacro %}

{% macro postgres__set_snapshot_isolation() -%}
    set transaction isolation level repeatable read
{%- endmacro %}


{#-
    Refresh the planner statistics of a (temporary) table just filled, so that joins with
    it are planned for its real size (PostgreSQL never auto-analyzes temporary tables).
-#}
{% macro analyze_relation(relation) -%}
    {{ return(adapter.dispatch('analyze_relation', 'kimai_atlas')(relation)) }}
{%- endmacro %}

{% macro default__analyze_relation(relation) -%}
{%- endmacro %}

{% macro postgres__analyze_relation(relation) -%}
    analyze {{ relation }}
{%- endmacro %}


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
