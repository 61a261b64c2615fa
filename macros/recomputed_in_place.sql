{#-
    The pre-hook of a table that every build recomputes whole, in place: materialized
    `incremental` without a key (dbt then appends the model's rows), this empties the
    table first, in the same transaction. dbt's `table` materialization would create a new
    table and drop the old one with CASCADE, which drops the views over it: a delta build
    that keeps the shadow schemas' views (pipelines/publish.py) could not refresh it.
-#}
{% macro recomputed_in_place() -%}
    {%- if is_incremental() -%}
        truncate table {{ this }}
    {%- endif -%}
{%- endmacro %}
