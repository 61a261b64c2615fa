with

source as (

    select * from {{ source('kimai', 'replica_kimai_timesheets') }}

),

renamed as (

    select
        ----------  ids
        id as timesheet_id,
        "user" as user_id,
        activity_id,
        project_id,

        ---------- time (instants in UTC; date_tz is the local day in `timezone`)
        start_time as started_at,
        end_time as ended_at,
        timezone,
        date_tz,
        end_time is null as is_running,
        -- Kimai's value as stored: end - start - break after rounding; 0 while running
        duration as duration_seconds,
        "break" as break_seconds,

        ---------- text
        description,
        category,

        ---------- money (the customer's currency, exact decimal)
        {{ to_money('rate') }} as rate_amount,
        {{ to_money('fixed_rate') }} as fixed_rate_amount,
        {{ to_money('hourly_rate') }} as hourly_rate,
        {{ to_money('internal_rate') }} as internal_cost_amount,

        ---------- booleans
        exported as is_exported,
        -- nullable in Kimai's DB; Kimai's own reports count only billable = 1
        coalesce(billable, false) as is_billable,

        ---------- timestamps (UTC)
        modified_at,
        synced_at

    from source

)

select * from renamed
