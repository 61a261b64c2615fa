-- One row per Kimai user: name, status, time zone, teams and working-time contract. No
-- e-mail address and nothing secret.

with

users as (

    select * from {{ ref('stg_kimai__users') }}

),

settings as (

    select * from {{ ref('int_user_settings') }}

),

team_names as (

    select * from {{ ref('int_user_team_names') }}

),

final as (

    select
        users.user_id,
        users.user_name,
        users.username,
        users.alias,
        users.job_title,
        users.color,
        users.supervisor_user_id,
        users.is_enabled,
        users.is_system_account,
        settings.timezone,
        settings.first_weekday,
        coalesce(team_names.team_names, '') as team_names,
        coalesce(team_names.team_count, 0) as team_count,
        settings.work_contract_type,
        settings.work_monday_seconds,
        settings.work_tuesday_seconds,
        settings.work_wednesday_seconds,
        settings.work_thursday_seconds,
        settings.work_friday_seconds,
        settings.work_saturday_seconds,
        settings.work_sunday_seconds,
        settings.holidays_per_year,
        settings.public_holiday_group,
        settings.work_start_date,
        settings.work_last_date,
        users.registered_at,
        users.synced_at
    from users
    left join settings
        on users.user_id = settings.user_id
    left join team_names
        on users.user_id = team_names.user_id

)

select * from final
