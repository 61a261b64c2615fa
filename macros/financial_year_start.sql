{#-
    The first day of the financial year holding `date_expression`: the latest date on or
    before it with the financial year's month and day (Kimai's
    DateTimeFactory::createStartOfFinancialYear, which takes only month and day from the
    `company.financial_year` setting). Month 1, day 1 is the calendar year.
-#}
{% macro financial_year_start(date_expression, month_expression, day_expression) -%}
    {%- set year = "cast(extract(year from " ~ date_expression ~ ") as integer)" -%}
    case
        when {{ date_from_parts(year, month_expression, day_expression) }} <= {{ date_expression }}
            then {{ date_from_parts(year, month_expression, day_expression) }}
        else {{ date_from_parts(year ~ " - 1", month_expression, day_expression) }}
    end
{%- endmacro %}
