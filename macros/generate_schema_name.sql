{#-
    Where each model lands. The BI schema (the profile's `schema`, i.e.
    ATLAS_ANALYTICS_SCHEMA) holds the marts (vw_*) and nothing else; everything else
    (staging, intermediate, the incremental facts table, stored test failures) goes to
    `<ATLAS_ANALYTICS_SCHEMA>_<custom schema>`, by default `<ATLAS_ANALYTICS_SCHEMA>_internal`,
    a schema the BI role is never granted. Unlike dbt's default, a mart ignores any custom
    schema so that a stray `+schema` cannot move a vw_* model out of the BI schema, and a
    non-mart never lands in the BI schema even without a custom schema.

    The var `build_schema_suffix` (set by `python -m pipelines.run transform`, empty
    otherwise) appends a suffix to every schema: the build then goes to shadow schemas
    (`analytics_build`, `analytics_internal_build`) that BI never reads, and the runner
    swaps them with the live ones in one transaction once every model and test passed
    (pipelines/publish.py).
-#}
{% macro generate_schema_name(custom_schema_name, node) -%}
    {%- set suffix = var('build_schema_suffix', '') | trim -%}
    {%- if node.resource_type == 'model' and 'marts' in node.fqn[1:-1] -%}
        {{ target.schema | trim }}{{ suffix }}
    {%- else -%}
        {{ target.schema | trim }}_{{ (custom_schema_name or 'internal') | trim }}{{ suffix }}
    {%- endif -%}
{%- endmacro %}
