{#-
    Atlas money in minor units (bigint `amount_minor`) as exact major units of its currency:
    numeric(18, 4), amount_minor / 10^exponent (iso_currency_exponent). Multiplying by an
    exact decimal keeps the arithmetic decimal on every adapter (DuckDB divides decimals in
    floating point).
-#}
{% macro minor_to_major(amount_minor, currency) -%}
    cast(
        cast({{ amount_minor }} as numeric(20, 0))
        * case {{ iso_currency_exponent(currency) }}
            when 0 then cast(1 as numeric(5, 4))
            when 3 then cast(0.001 as numeric(5, 4))
            when 4 then cast(0.0001 as numeric(5, 4))
            else cast(0.01 as numeric(5, 4))
        end
        as numeric(18, 4)
    )
{%- endmacro %}


{#-
    A major-unit amount as text with exactly its currency's ISO decimals ("JPY 5000",
    "EUR 50.00", "KWD 12.345"), for readable per-currency lists.
-#}
{% macro money_text(amount, currency) -%}
    case {{ iso_currency_exponent(currency) }}
        when 0 then cast(cast({{ amount }} as numeric(18, 0)) as {{ dbt.type_string() }})
        when 3 then cast(cast({{ amount }} as numeric(18, 3)) as {{ dbt.type_string() }})
        when 4 then cast(cast({{ amount }} as numeric(18, 4)) as {{ dbt.type_string() }})
        else cast(cast({{ amount }} as numeric(18, 2)) as {{ dbt.type_string() }})
    end
{%- endmacro %}
