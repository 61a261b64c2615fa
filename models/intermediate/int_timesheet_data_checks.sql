-- One row per (timesheet, rule): a timesheet Kimai holds as it is, but whose values no
-- report should take at face value. Kimai itself allows them (its API takes a negative
-- duration or any date); the views count them as Kimai's own screens do, and list them in
-- vw_data_issues. Thresholds: see docs/models.md, "Bad data in Kimai".
--
-- A table that every build recomputes whole, in place (macros/recomputed_in_place.sql):
-- one scan of the timesheets, where a view would scan them again for every query and
-- test of vw_data_issues and vw_sync_health.

{{
    config(
        materialized='incremental',
        on_schema_change='sync_all_columns',
        pre_hook=["{{ recomputed_in_place() }}"],
    )
}}

with

timesheets as (

    select * from {{ ref('stg_kimai__timesheets') }}

),

flagged as (

    -- one scan: the few rows that break a rule, then one row per rule broken
    select
        timesheet_id,
        duration_seconds,
        started_at,
        synced_at,
        not is_running and duration_seconds < 0 as is_negative,
        -- longer than 31 days
        not is_running and duration_seconds > 2678400 as is_absurd,
        -- more than a year ahead of the build
        started_at > {{ dbt.dateadd('day', 366, dbt.current_timestamp()) }} as is_far_future,
        started_at < cast('1970-01-01' as {{ dbt.type_timestamp() }}) as is_far_past,
        ended_at < started_at as is_end_before_start,
        ended_at
    from timesheets
    where
        (not is_running and (duration_seconds < 0 or duration_seconds > 2678400))
        or ended_at < started_at
        or started_at > {{ dbt.dateadd('day', 366, dbt.current_timestamp()) }}
        or started_at < cast('1970-01-01' as {{ dbt.type_timestamp() }})

),

checks as (

    {% for rule, column, flag, value in [
        ('negative_duration', 'duration', 'is_negative', 'duration_seconds'),
        ('absurd_duration', 'duration', 'is_absurd', 'duration_seconds'),
        ('far_future_date', 'start_time', 'is_far_future', 'started_at'),
        ('far_past_date', 'start_time', 'is_far_past', 'started_at'),
        ('end_before_start', 'end_time', 'is_end_before_start', 'ended_at'),
    ] %}
        select
            timesheet_id,
            '{{ column }}' as column_name,
            '{{ rule }}' as rule,
            cast({{ value }} as {{ dbt.type_string() }}) as raw_value,
            synced_at
        from flagged
        where {{ flag }}
        {% if not loop.last %}union all{% endif %}
    {% endfor %}

),

final as (

    select
        'timesheets' as table_name,
        cast(timesheet_id as {{ dbt.type_string() }}) as row_key,
        column_name,
        rule,
        raw_value,
        synced_at as first_seen_at
    from checks

)

select * from final
