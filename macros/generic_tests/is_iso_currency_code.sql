{#- Fails on every non-NULL value of `column_name` that is not an ISO 4217 code (macros/iso_4217.sql, generated from the iso4217 package). -#}
{% test is_iso_currency_code(model, column_name) %}
    select {{ column_name }}
    from {{ model }}
    where {{ column_name }} is not null
      and {{ column_name }} not in (
        {%- for code in iso_currency_codes() %}'{{ code }}'{% if not loop.last %}, {% endif %}{% endfor -%}
      )
{% endtest %}
