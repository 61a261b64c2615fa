{#-
    A 64-bit hash (bigint) of a list of SQL expressions, e.g. ['timesheet_id', 'synced_at'],
    computed from the values' binary form with each type's own hash function (independent
    of the session's time zone and formats), equal values hash equal. PostgreSQL (14+):
    hash_record_extended of the row; DuckDB: its variadic hash(), shifted into bigint's
    range. Used by the incremental facts table for its state and by its equality test;
    combined with bit_xor into a hash of a set of rows.
-#}
{% macro hash_values(expressions) -%}
    {{ return(adapter.dispatch('hash_values', 'kimai_atlas')(expressions)) }}
{%- endmacro %}

{% macro postgres__hash_values(expressions) -%}
    hash_record_extended(row({{ expressions | join(', ') }}), 0)
{%- endmacro %}

{% macro duckdb__hash_values(expressions) -%}
    cast(hash({{ expressions | join(', ') }}) >> 1 as bigint)
{%- endmacro %}

{% macro default__hash_values(expressions) -%}
    {{ exceptions.raise_compiler_error("hash_values is implemented for postgres and duckdb only") }}
{%- endmacro %}
