-- One row per Kimai activity with at least one timesheet, across every project that uses
-- it (a global activity spans projects and customers): finished work in seconds, billable
-- seconds, revenue (billable rate) and internal cost, as int_project_timesheet_totals.

with

timesheets as (

    select * from {{ ref('int_timesheets_valued') }}

),

totals as (

    select
        activity_id,
        cast(count(*) as {{ dbt.type_bigint() }}) as timesheet_count,
        cast(sum(case when is_running then 1 else 0 end) as {{ dbt.type_bigint() }}) as running_timesheet_count,
        cast(coalesce(sum(duration_seconds), 0) as {{ dbt.type_bigint() }}) as duration_seconds,
        cast(coalesce(sum(billable_seconds), 0) as {{ dbt.type_bigint() }}) as billable_seconds,
        cast(coalesce(sum(revenue), 0) as numeric(18, 4)) as revenue,
        cast(coalesce(sum(internal_cost), 0) as numeric(18, 4)) as internal_cost,
        min(date_tz) as first_date_tz,
        max(date_tz) as last_date_tz

    from timesheets
    group by activity_id

)

select * from totals
