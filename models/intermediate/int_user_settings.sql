-- One row per Kimai user: the allow-listed preferences read the way Kimai reads them
-- (App\Entity\User): time zone (a name the database does not know reads as NULL), first
-- weekday, and the working-time contract (App\WorkingTime: type `day` = seconds expected
-- per weekday, between the contract's first and last day; anything else = no contract).

with

users as (

    select user_id from {{ ref('stg_kimai__users') }}

),

preferences as (

    select * from {{ ref('stg_kimai__user_preferences') }}

),

zones as (

    select zone_name from {{ ref('int_known_time_zones') }}

),

pivoted as (

    select
        user_id,
        max(case when preference_name = 'timezone' then preference_value end) as timezone,
        max(case when preference_name = 'first_weekday' then preference_value end) as first_weekday,
        max(case when preference_name = 'work_contract_type' then preference_value end)
        as work_contract_type,
        max(case when preference_name = 'work_monday' then preference_value end) as work_monday,
        max(case when preference_name = 'work_tuesday' then preference_value end) as work_tuesday,
        max(case when preference_name = 'work_wednesday' then preference_value end)
        as work_wednesday,
        max(case when preference_name = 'work_thursday' then preference_value end) as work_thursday,
        max(case when preference_name = 'work_friday' then preference_value end) as work_friday,
        max(case when preference_name = 'work_saturday' then preference_value end) as work_saturday,
        max(case when preference_name = 'work_sunday' then preference_value end) as work_sunday,
        max(case when preference_name = 'holidays' then preference_value end) as holidays,
        max(case when preference_name = 'public_holiday_group' then preference_value end)
        as public_holiday_group,
        max(case when preference_name = 'work_start_day' then preference_value end)
        as work_start_day,
        max(case when preference_name = 'work_last_day' then preference_value end) as work_last_day
    from preferences
    group by user_id

),

final as (

    select
        users.user_id,
        zones.zone_name as timezone,
        pivoted.timezone as timezone_preference,
        -- Kimai: sunday only when set so, monday otherwise
        case when pivoted.first_weekday = 'sunday' then 'sunday' else 'monday' end as first_weekday,
        case when pivoted.work_contract_type = 'day' then 'day' else 'none' end
        as work_contract_type,
        {{ php_int('pivoted.work_monday') }} as work_monday_seconds,
        {{ php_int('pivoted.work_tuesday') }} as work_tuesday_seconds,
        {{ php_int('pivoted.work_wednesday') }} as work_wednesday_seconds,
        {{ php_int('pivoted.work_thursday') }} as work_thursday_seconds,
        {{ php_int('pivoted.work_friday') }} as work_friday_seconds,
        {{ php_int('pivoted.work_saturday') }} as work_saturday_seconds,
        {{ php_int('pivoted.work_sunday') }} as work_sunday_seconds,
        {{ php_half_days('pivoted.holidays') }} as holidays_per_year,
        pivoted.public_holiday_group,
        {{ php_date('pivoted.work_start_day') }} as work_start_date,
        {{ php_date('pivoted.work_last_day') }} as work_last_date
    from users
    left join pivoted
        on users.user_id = pivoted.user_id
    left join zones
        on pivoted.timezone = zones.zone_name

)

select * from final
