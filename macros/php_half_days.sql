{#-
    A number of days rounded to halves (27.25 → 27.5, half away from zero as PHP's round);
    0 for a value that is not numeric.
-#}
{% macro php_half_days(expression) -%}
    case
        when {{ text_matches(expression, '[[:space:]]*[+-]?([0-9]{1,12}([.][0-9]{0,6})?|[.][0-9]{1,6})[[:space:]]*') }}
            then cast(round(cast(trim({{ expression }}) as numeric(18, 6)) * 2) / 2 as numeric(18, 1))
        else cast(0 as numeric(18, 1))
    end
{%- endmacro %}
