{#-
    numerator / denominator as numeric(18, scale), rounded half away from zero, exactly, on
    every adapter; NULL when the denominator is 0. Operands are decimals with at most 6
    decimal places (or integers).

    PostgreSQL divides numerics exactly. DuckDB divides decimals in double precision, which
    rounds ties by their binary neighbour (7.25 / 5000 = 0.00145 became 0.0014 there and
    0.0015 on PostgreSQL), so on DuckDB the quotient is computed in integers: both operands
    scaled to whole millionths, then round(n / d) = (2|n| * 10^scale + |d|) // (2|d|).
-#}
{% macro decimal_ratio(numerator, denominator, scale=4) -%}
    {{ return(adapter.dispatch('decimal_ratio', 'kimai_atlas')(numerator, denominator, scale)) }}
{%- endmacro %}

{% macro default__decimal_ratio(numerator, denominator, scale) -%}
    cast(cast({{ numerator }} as numeric) / nullif({{ denominator }}, 0) as numeric(18, {{ scale }}))
{%- endmacro %}

{% macro duckdb__decimal_ratio(numerator, denominator, scale) -%}
    {%- set n = "cast(cast(" ~ numerator ~ " as decimal(38, 6)) * 1000000 as hugeint)" -%}
    {%- set d = "cast(cast(nullif(" ~ denominator ~ ", 0) as decimal(38, 6)) * 1000000 as hugeint)" -%}
    {#- the integer quotient k stands for k / 10^scale: that division is exact in a double -#}
    cast(
        cast(
            sign({{ n }}) * sign({{ d }})
            * ((2 * abs({{ n }}) * {{ 10 ** scale }} + abs({{ d }})) // (2 * abs({{ d }})))
            as decimal(38, 0)
        ) / {{ 10 ** scale }}
        as numeric(18, {{ scale }})
    )
{%- endmacro %}
