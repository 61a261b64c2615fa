-- One row per Kimai activity (hidden ones included): its project (NULL for a global
-- activity, which every project allowing global activities may book), the work recorded
-- on it across all projects, and its budget figures as Kimai computes them.

with

activities as (

    select * from {{ ref('stg_kimai__activities') }}

),

scopes as (

    select * from {{ ref('int_budget_scopes') }}
    where budget_scope = 'activity'

),

projects as (

    select
        project_id,
        project_name,
        customer_id
    from {{ ref('stg_kimai__projects') }}

),

-- the work on each activity, across every project that uses it
totals as (

    select
        activity_id,
        cast(count(*) as {{ dbt.type_bigint() }}) as timesheet_count,
        cast(sum(case when is_running then 1 else 0 end) as {{ dbt.type_bigint() }})
        as running_timesheet_count,
        cast(coalesce(sum(duration_seconds), 0) as {{ dbt.type_bigint() }}) as duration_seconds,
        cast(coalesce(sum(billable_seconds), 0) as {{ dbt.type_bigint() }}) as billable_seconds,
        cast(coalesce(sum(revenue), 0) as numeric(18, 4)) as revenue,
        cast(coalesce(sum(internal_cost), 0) as numeric(18, 4)) as internal_cost,
        min(date_tz) as first_date_tz,
        max(date_tz) as last_date_tz

    from {{ ref('int_timesheets_valued') }}
    group by activity_id

),

final as (

    select
        activities.activity_id,
        activities.activity_name,
        activities.activity_number,
        activities.project_id,
        projects.project_name,
        projects.customer_id,
        scopes.currency,
        activities.is_global,
        activities.is_visible,
        activities.is_billable,
        activities.color,
        activities.budget,
        activities.budget_type,
        activities.time_budget_seconds,
        {{ seconds_to_hours('activities.time_budget_seconds') }} as time_budget_hours,
        scopes.is_monthly_budget,
        {{ budget_figures(
            'activities.budget',
            'activities.time_budget_seconds',
            'coalesce(totals.revenue, 0)',
            'coalesce(totals.billable_seconds, 0)',
            'coalesce(totals.internal_cost, 0)',
            'not scopes.is_monthly_budget',
        ) }},
        cast(coalesce(totals.timesheet_count, 0) as {{ dbt.type_bigint() }}) as timesheet_count,
        cast(coalesce(totals.running_timesheet_count, 0) as {{ dbt.type_bigint() }})
        as running_timesheet_count,
        cast(coalesce(totals.duration_seconds, 0) as {{ dbt.type_bigint() }}) as duration_seconds,
        {{ seconds_to_hours('coalesce(totals.duration_seconds, 0)') }} as hours_recorded,
        {{ seconds_to_hours('coalesce(totals.billable_seconds, 0)') }} as billable_hours,
        totals.first_date_tz,
        totals.last_date_tz,
        activities.created_at,
        activities.synced_at
    from activities
    inner join scopes
        on activities.activity_id = scopes.scope_id
    left join projects
        on activities.project_id = projects.project_id
    left join totals
        on activities.activity_id = totals.activity_id

)

select * from final
