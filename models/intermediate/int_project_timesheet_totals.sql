-- One row per Kimai project with at least one timesheet: finished work in seconds, hours
-- (converted from the summed seconds), billable hours, revenue and internal cost (exact
-- decimal sums), and how many timers are still running (not counted in the hours).

with

timesheets as (

    select * from {{ ref('int_timesheets_valued') }}

),

totals as (

    select
        project_id,
        cast(count(*) as {{ dbt.type_bigint() }}) as timesheet_count,
        cast(sum(case when is_running then 1 else 0 end) as {{ dbt.type_bigint() }})
        as running_timesheet_count,
        cast(coalesce(sum(duration_seconds), 0) as {{ dbt.type_bigint() }}) as duration_seconds,
        cast(coalesce(sum(billable_seconds), 0) as {{ dbt.type_bigint() }}) as billable_seconds,
        cast(coalesce(sum(revenue), 0) as numeric(18, 4)) as revenue,
        cast(coalesce(sum(internal_cost), 0) as numeric(18, 4)) as internal_cost,
        min(date_tz) as first_date_tz,
        max(date_tz) as last_date_tz

    from timesheets
    group by project_id

),

final as (

    select
        project_id,
        timesheet_count,
        running_timesheet_count,
        duration_seconds,
        billable_seconds,
        {{ seconds_to_hours('duration_seconds') }} as hours_recorded,
        {{ seconds_to_hours('billable_seconds') }} as billable_hours,
        revenue,
        internal_cost,
        first_date_tz,
        last_date_tz

    from totals

)

select * from final
