with

customers as (

    select * from {{ ref('stg_kimai__customers') }}

),

projects as (

    select * from {{ ref('int_projects_joined_to_overlays') }}

),

totals as (

    select * from {{ ref('int_project_timesheet_totals') }}

),

project_counts as (

    select
        customer_id,
        cast(sum(case when origin = 'kimai' then 1 else 0 end) as {{ dbt.type_bigint() }})
        as project_count,
        cast(
            sum(case when origin = 'kimai' and is_visible then 1 else 0 end)
            as {{ dbt.type_bigint() }}
        )
        as visible_project_count,
        cast(sum(case when origin = 'atlas' then 1 else 0 end) as {{ dbt.type_bigint() }})
        as prospective_project_count

    from projects
    where customer_id is not null
    group by customer_id

),

work as (

    select
        projects.customer_id,
        cast(sum(totals.timesheet_count) as {{ dbt.type_bigint() }}) as timesheet_count,
        cast(sum(totals.running_timesheet_count) as {{ dbt.type_bigint() }})
        as running_timesheet_count,
        cast(sum(totals.duration_seconds) as {{ dbt.type_bigint() }}) as duration_seconds,
        cast(sum(totals.billable_seconds) as {{ dbt.type_bigint() }}) as billable_seconds,
        sum(totals.revenue) as revenue,
        sum(totals.internal_cost) as internal_cost

    from totals
    inner join projects
        on totals.project_id = projects.project_id
    group by projects.customer_id

),

final as (

    select
        customers.customer_id,
        customers.customer_name,
        customers.customer_number,
        customers.company_name,
        customers.country_code,
        customers.currency,
        customers.timezone,
        customers.is_visible,
        customers.is_billable,
        ---------- budgets, as Kimai computes them (through the customer's projects)
        customers.budget,
        customers.budget_type,
        customers.time_budget_seconds,
        {{ seconds_to_hours('customers.time_budget_seconds') }} as time_budget_hours,
        {{ is_monthly_budget(
            'customers.budget_type', 'customers.budget', 'customers.time_budget_seconds'
        ) }}
        as is_monthly_budget,
        {{ budget_figures(
            'customers.budget',
            'customers.time_budget_seconds',
            'coalesce(work.revenue, 0)',
            'coalesce(work.billable_seconds, 0)',
            'coalesce(work.internal_cost, 0)',
            'not ' ~ is_monthly_budget('customers.budget_type', 'customers.budget', 'customers.time_budget_seconds'),
        ) }},
        coalesce(project_counts.project_count, 0) as project_count,
        coalesce(project_counts.visible_project_count, 0) as visible_project_count,
        coalesce(project_counts.prospective_project_count, 0) as prospective_project_count,
        coalesce(work.timesheet_count, 0) as timesheet_count,
        coalesce(work.running_timesheet_count, 0) as running_timesheet_count,
        coalesce(work.duration_seconds, 0) as duration_seconds,
        {{ seconds_to_hours('coalesce(work.duration_seconds, 0)') }} as hours_recorded,
        {{ seconds_to_hours('coalesce(work.billable_seconds, 0)') }} as billable_hours,
        cast(coalesce(work.revenue, 0) as numeric(18, 4)) as revenue,
        customers.created_at,
        customers.synced_at

    from customers
    left join project_counts
        on customers.customer_id = project_counts.customer_id
    left join work
        on customers.customer_id = work.customer_id

)

select * from final
