{#-
    An ORDER BY key for names that sorts the same on every database whatever its collation:
    case-insensitive first, then by exact code points (ties only between names that differ
    in case). Used for the tag strings, whose order is part of their value.
-#}
{% macro sort_key(expression) -%}
    {{ return(adapter.dispatch('sort_key', 'kimai_atlas')(expression)) }}
{%- endmacro %}

{% macro default__sort_key(expression) -%}
    lower({{ expression }}), {{ expression }}
{%- endmacro %}

{% macro postgres__sort_key(expression) -%}
    lower({{ expression }}) collate "C", {{ expression }} collate "C"
{%- endmacro %}
