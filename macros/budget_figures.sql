{#-
    The budget figures of one entity (project, customer, activity; all time or one month),
    computed as Kimai's BudgetStatisticModel does: what counts against a budget is the
    closed, billable work (`budget_used` = its rate, `time_budget_used_seconds` = its
    duration); open = greatest(budget − used, 0); ratio = used ÷ budget, not capped, NULL
    when the budget is not above 0 (open NULL only without a budget value: a prospective
    project). `applies` false (the all-time figures of a monthly
    budget, which live per month in vw_budget_months) makes ratios and open NULL.
    internal_cost counts every closed record, billable or not; profit = used − cost.
-#}
{% macro budget_figures(budget, time_budget_seconds, budget_used, seconds_used, internal_cost, applies='true') -%}
    cast({{ budget_used }} as numeric(18, 4)) as budget_used,
    cast({{ seconds_used }} as {{ dbt.type_bigint() }}) as time_budget_used_seconds,
    case
        when {{ applies }} and {{ budget }} > 0 then {{ decimal_ratio(budget_used, budget) }}
    end as budget_burn_ratio,
    case
        when {{ applies }} and {{ time_budget_seconds }} > 0
            then {{ decimal_ratio(seconds_used, time_budget_seconds) }}
    end as time_budget_burn_ratio,
    case
        when {{ applies }} and {{ budget }} is not null
            then cast(greatest({{ budget }} - {{ budget_used }}, 0) as numeric(18, 4))
    end as budget_open,
    case
        when {{ applies }} and {{ time_budget_seconds }} is not null
            then cast(greatest({{ time_budget_seconds }} - {{ seconds_used }}, 0) as {{ dbt.type_bigint() }})
    end as time_budget_open_seconds,
    cast({{ internal_cost }} as numeric(18, 4)) as internal_cost,
    cast({{ budget_used }} - {{ internal_cost }} as numeric(18, 4)) as profit
{%- endmacro %}
