{#-
    Kimai money (DOUBLE in Kimai, double precision in the replica) as an exact decimal:
    numeric(18, 4), rounded half away from zero to 4 decimals. Kimai itself rounds every
    computed amount to 4 decimals (2 in "decimal" mode), so this is lossless for values Kimai
    writes, and every later sum is exact decimal arithmetic, never a float sum.
-#}
{% macro to_money(expression) -%}
    cast({{ expression }} as numeric(18, 4))
{%- endmacro %}
