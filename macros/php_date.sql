{#-
    A `Y-m-d` value as a date built the way PHP's setDate builds it (an out-of-range day
    carries into the next month: 2023-02-29 is 1 March); NULL when the text is no such date.
-#}
{% macro php_date(expression) -%}
    case
        when {{ text_matches(expression, '[0-9]{4}-(0?[1-9]|1[0-2])-(0?[1-9]|[12][0-9]|3[01])') }}
            then {{ date_from_parts(
                "cast(split_part(" ~ expression ~ ", '-', 1) as integer)",
                "cast(split_part(" ~ expression ~ ", '-', 2) as integer)",
                "cast(split_part(" ~ expression ~ ", '-', 3) as integer)",
            ) }}
    end
{%- endmacro %}
