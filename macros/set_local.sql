{#-
    Pre-hook: set a PostgreSQL setting for the current transaction only (`set local`), e.g.
    work_mem, so the hash joins of a 1M-row rebuild stay in memory. Nothing on other adapters.
-#}
{% macro set_local(name, value) -%}
    {{ return(adapter.dispatch('set_local', 'kimai_atlas')(name, value)) }}
{%- endmacro %}

{% macro default__set_local(name, value) -%}
{%- endmacro %}

{% macro postgres__set_local(name, value) -%}
    set local {{ name }} = '{{ value }}'
{%- endmacro %}
