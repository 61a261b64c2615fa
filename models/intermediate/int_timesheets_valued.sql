-- One row per timesheet: the measures every model derives from a time record, defined once.
-- A running timer (no end yet) has no duration, hours, billable hours, revenue or internal
-- cost (NULL, except revenue 0 on a non-billable timer): Kimai stores 0 for all of them
-- while it runs, which would otherwise read as finished zero-hour work.

with

timesheets as (

    select * from {{ ref('stg_kimai__timesheets') }}

),

valued as (

    select
        timesheet_id,
        user_id,
        activity_id,
        project_id,
        started_at,
        ended_at,
        timezone,
        date_tz,
        is_running,
        is_billable,
        is_exported,
        case when not is_running then duration_seconds end as duration_seconds,
        case when not is_running then {{ seconds_to_hours('duration_seconds') }} end
        as duration_hours,
        case
            when is_running then null
            when is_billable then duration_seconds
            else 0
        end as billable_seconds,
        break_seconds,
        -- revenue follows the record's own billable flag; Kimai's rate is the record's total
        case
            when not is_billable then cast(0 as numeric(18, 4))
            when is_running then null
            else rate_amount
        end as revenue,
        case when not is_running then internal_cost_amount end as internal_cost,
        rate_amount,
        fixed_rate_amount,
        hourly_rate,
        description,
        category,
        modified_at,
        synced_at

    from timesheets

)

select * from valued
