{#-
    Kimai money (DOUBLE in Kimai, double precision in the replica) as an exact decimal:
    numeric(18, 4), rounded half away from zero to 4 decimals. Kimai itself rounds every
    computed amount to 4 decimals (2 in "decimal" mode), so this is lossless for values Kimai
    writes, and every later sum is exact decimal arithmetic, never a float sum.

    The rounding is PostgreSQL's: the double is read as its 15 significant digits, then
    rounded half away from zero. DuckDB's own cast rounds the binary value instead (the
    double nearest 0.00015 lies just below it, so it becomes 0.0001 there and 0.0002 on
    PostgreSQL); going through the same 15-digit text gives the same decimals on both.
-#}
{% macro to_money(expression) -%}
    {{ return(adapter.dispatch('to_money', 'kimai_atlas')(expression)) }}
{%- endmacro %}

{% macro default__to_money(expression) -%}
    cast({{ expression }} as numeric(18, 4))
{%- endmacro %}

{% macro duckdb__to_money(expression) -%}
    cast(printf('%.15g', {{ expression }}) as numeric(18, 4))
{%- endmacro %}
