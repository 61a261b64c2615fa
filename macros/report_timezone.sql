{#-
    The "viewer" zone of Kimai's screens that bucket start_time by the viewer's calendar
    (budgets, projects by month, customer monthly, dashboard counters): var report_timezone,
    from ATLAS_REPORT_TIMEZONE (default UTC), as a SQL string literal. The runner checks
    the name against the database's zones before it builds; here anything but an IANA-like
    name is refused, so the value can never break out of the literal.
-#}
{% macro report_timezone() -%}
    {%- set zone = var('report_timezone', 'UTC') | trim -%}
    {%- if not modules.re.match('^[A-Za-z][A-Za-z0-9_+/-]{0,63}$', zone) -%}
        {{ exceptions.raise_compiler_error("var report_timezone must be an IANA time zone name, got '" ~ zone ~ "'") }}
    {%- endif -%}
    '{{ zone }}'
{%- endmacro %}
