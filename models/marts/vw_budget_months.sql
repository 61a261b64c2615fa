-- One row per (budget scope, entity, report month) for every project, customer and
-- activity whose budget is monthly: every month from the entity's first record through
-- the current month (or its last record, if later, up to a year ahead), zero-filled, in
-- the report zone.

with

scopes as (

    select * from {{ ref('int_budget_scopes') }}
    where is_monthly_budget

),

usage as (

    select * from {{ ref('int_budget_month_usage') }}

),

bounds as (

    select
        budget_scope,
        scope_id,
        -- records before 1970 or over a year ahead are Kimai data issues (vw_data_issues):
        -- they do not stretch the month series over centuries
        greatest(min(report_month_start_date), cast('1970-01-01' as date)) as first_month,
        max(report_month_start_date) as last_month
    from usage
    group by budget_scope, scope_id

),

current_month as (

    select cast({{ dbt.date_trunc('month', report_today()) }} as date) as month_start

),

months as (

    select
        scopes.budget_scope,
        scopes.scope_id,
        {{ month_series(
            'least(coalesce(bounds.first_month, current_month.month_start), current_month.month_start)',
            'least(greatest(coalesce(bounds.last_month, current_month.month_start), current_month.month_start), cast(' ~ dbt.dateadd('month', 12, 'current_month.month_start') ~ ' as date))',
        ) }} as month_start
    from scopes
    cross join current_month
    left join bounds
        on
            scopes.budget_scope = bounds.budget_scope
            and scopes.scope_id = bounds.scope_id

),

final as (

    select
        months.budget_scope,
        months.scope_id,
        scopes.scope_name,
        cast(months.month_start as date) as report_month_start_date,
        scopes.currency,
        scopes.budget,
        scopes.time_budget_seconds,
        {{ budget_figures(
            'scopes.budget',
            'scopes.time_budget_seconds',
            'coalesce(usage.revenue, 0)',
            'coalesce(usage.billable_seconds, 0)',
            'coalesce(usage.internal_cost, 0)',
        ) }},
        coalesce(usage.duration_seconds, 0) as duration_seconds,
        {{ seconds_to_hours('coalesce(usage.duration_seconds, 0)') }} as duration_hours,
        coalesce(usage.timesheet_count, 0) as timesheet_count
    from months
    inner join scopes
        on
            months.budget_scope = scopes.budget_scope
            and months.scope_id = scopes.scope_id
    left join usage
        on
            months.budget_scope = usage.budget_scope
            and months.scope_id = usage.scope_id
            and cast(months.month_start as date) = usage.report_month_start_date

)

select * from final
