-- One row per (Kimai user, local day): every day from the user's first record through
-- today in the user's zone (the report zone when the user has none), zero-filled, with the
-- seconds the working-time contract expects that day against the recorded and billable
-- seconds. Utilization = sum(billable_seconds) / sum(expected_seconds).
--
-- The generated days and the days with work are stacked and grouped by (user, day), not
-- joined: a filter on date_tz (a month in Metabase) then reaches the timesheets' scan.

with

settings as (

    select * from {{ ref('int_user_settings') }}

),

first_records as (

    -- a record before 1970 is a Kimai data issue (vw_data_issues), not a century of days
    select
        user_id,
        greatest(min(date_tz), cast('1970-01-01' as date)) as first_date
    from {{ ref('stg_kimai__timesheets') }}
    group by user_id

),

generated as (

    select
        first_records.user_id,
        cast({{ day_series(
            'first_records.first_date',
            'cast(' ~ to_local_timestamp('current_timestamp', 'coalesce(settings.timezone, ' ~ report_timezone() ~ ')') ~ ' as date)',
        ) }} as date) as date_tz
    from first_records
    inner join settings
        on first_records.user_id = settings.user_id

),

days as (

    select
        generated.user_id,
        generated.date_tz,
        case
            when settings.work_contract_type <> 'day' then 0
            when settings.work_start_date > generated.date_tz then 0
            when settings.work_last_date < generated.date_tz then 0
            else case {{ iso_weekday('generated.date_tz') }}
                when 1 then settings.work_monday_seconds
                when 2 then settings.work_tuesday_seconds
                when 3 then settings.work_wednesday_seconds
                when 4 then settings.work_thursday_seconds
                when 5 then settings.work_friday_seconds
                when 6 then settings.work_saturday_seconds
                else settings.work_sunday_seconds
            end
        end as expected_seconds
    from generated
    inner join settings
        on generated.user_id = settings.user_id

),

stacked as (

    select
        user_id,
        date_tz,
        expected_seconds,
        0 as duration_seconds,
        0 as billable_seconds,
        1 as generated
    from days

    union all

    select
        user_id,
        date_tz,
        0 as expected_seconds,
        duration_seconds,
        billable_seconds,
        0 as generated
    from {{ ref('int_user_day_totals') }}

),

final as (

    select
        user_id,
        date_tz,
        cast(sum(expected_seconds) as {{ dbt.type_bigint() }}) as expected_seconds,
        cast(sum(duration_seconds) as {{ dbt.type_bigint() }}) as duration_seconds,
        cast(sum(billable_seconds) as {{ dbt.type_bigint() }}) as billable_seconds
    from stacked
    group by user_id, date_tz
    -- only the generated days: no day after today, even with future-dated work
    having max(generated) = 1

)

select
    user_id,
    date_tz,
    expected_seconds,
    duration_seconds,
    billable_seconds,
    {{ seconds_to_hours('expected_seconds') }} as expected_hours,
    {{ seconds_to_hours('duration_seconds') }} as duration_hours,
    {{ seconds_to_hours('billable_seconds') }} as billable_hours
from final
