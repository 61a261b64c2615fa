{#- Whether `expression` matches the regular expression `pattern` as a whole. -#}
{% macro text_matches(expression, pattern) -%}
    {{ return(adapter.dispatch('text_matches', 'kimai_atlas')(expression, pattern)) }}
{%- endmacro %}

{% macro default__text_matches(expression, pattern) -%}
    coalesce({{ expression }} ~ '^({{ pattern }})$', false)
{%- endmacro %}

{% macro duckdb__text_matches(expression, pattern) -%}
    coalesce(regexp_full_match({{ expression }}, '{{ pattern }}'), false)
{%- endmacro %}
