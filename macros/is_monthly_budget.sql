{#- Kimai's BudgetTrait::isMonthlyBudget: type `month` and a money or time budget above 0. -#}
{% macro is_monthly_budget(budget_type, budget, time_budget_seconds) -%}
    coalesce({{ budget_type }} = 'month' and ({{ budget }} > 0 or {{ time_budget_seconds }} > 0), false)
{%- endmacro %}
