{#-
    The `grants` config of the BI-facing models: SELECT for ATLAS_BI_ROLE, or nothing at all
    when the variable is unset or empty (dbt then neither grants nor revokes).
-#}
{% macro bi_grants() -%}
    {%- set role = env_var('ATLAS_BI_ROLE', '') | trim -%}
    {%- if role -%}
        {{ return({'select': [role]}) }}
    {%- else -%}
        {{ return({}) }}
    {%- endif -%}
{%- endmacro %}
