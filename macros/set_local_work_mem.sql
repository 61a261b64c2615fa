{#-
    Pre-hook: raise PostgreSQL's work_mem for the current transaction only (`set local`), so
    the hash joins of a 1M-row rebuild stay in memory. Nothing on other adapters.
-#}
{% macro set_local_work_mem(size='256MB') -%}
    {{ return(adapter.dispatch('set_local_work_mem', 'kimai_atlas')(size)) }}
{%- endmacro %}

{% macro default__set_local_work_mem(size) -%}
{%- endmacro %}

{% macro postgres__set_local_work_mem(size) -%}
    set local work_mem = '{{ size }}'
{%- endmacro %}
