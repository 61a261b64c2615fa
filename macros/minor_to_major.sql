{#-
    Atlas money in minor units (bigint `amount_minor`, e.g. cents) as exact major units:
    numeric(18, 2), the value / 100. Every ISO 4217 currency the overlays use has 2 minor
    digits; a currency with another exponent would need a lookup here.
-#}
{% macro minor_to_major(expression) -%}
    cast(cast({{ expression }} as numeric(20, 0)) / 100 as numeric(18, 2))
{%- endmacro %}
