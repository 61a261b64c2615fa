{#-
    A 64-bit hash of every column of a row, given the row's table alias (all columns,
    whatever they are: no list to keep in sync). PostgreSQL (14+) hashes the record with
    each column type's own hash function (hash_record_extended: no text formatting, about
    twice as fast as md5 of the row text, and equal values hash equal); DuckDB hashes the
    row struct. Used by the incremental facts table to find changed rows; a false "equal"
    needs a 64-bit collision on the same timesheet id.
-#}
{% macro row_hash(relation_alias) -%}
    {{ return(adapter.dispatch('row_hash', 'kimai_atlas')(relation_alias)) }}
{%- endmacro %}

{% macro postgres__row_hash(relation_alias) -%}
    hash_record_extended({{ relation_alias }}, 0)
{%- endmacro %}

{% macro duckdb__row_hash(relation_alias) -%}
    hash({{ relation_alias }})
{%- endmacro %}

{% macro default__row_hash(relation_alias) -%}
    {{ exceptions.raise_compiler_error("row_hash is implemented for postgres and duckdb only") }}
{%- endmacro %}
