-- One row per Kimai timesheet: every column of vw_timesheet_facts, computed from the
-- replica and the overlays. vw_timesheet_facts reads this view directly (default) or the
-- incremental table int_timesheet_facts_materialized, which holds the same rows
-- (var timesheet_facts_materialization; docs/models.md, "Materialization").

with

timesheets as (

    select * from {{ ref('int_timesheets_valued') }}

),

users as (

    select
        user_id,
        user_name,
        username
    from {{ ref('stg_kimai__users') }}

),

activities as (

    select
        activity_id,
        activity_name,
        is_billable
    from {{ ref('stg_kimai__activities') }}

),

projects as (

    -- the columns taken are timesheet_facts_project_columns() (joined below)
    select * from {{ ref('int_projects_joined_to_overlays') }}
    where origin = 'kimai'

),

timesheet_tags as (

    select * from {{ ref('int_timesheet_tags_aggregated') }}

),

joined as (

    select
        ---------- keys and names
        timesheets.timesheet_id,
        timesheets.user_id,
        users.user_name,
        users.username,
        timesheets.project_id,
        timesheets.activity_id,
        activities.activity_name,

        ---------- from the project with Atlas's overlays (listed once, in
        ---------- macros/timesheet_facts_model.sql: the incremental refresh compares them)
        {%- for column, expression in timesheet_facts_project_columns().items() %}
            {{ expression | replace('{p}', 'projects') }} as {{ column }},
        {%- endfor %}

        ---------- time
        timesheets.started_at,
        timesheets.ended_at,
        {{ to_local_timestamp('timesheets.started_at', 'timesheets.timezone') }}
        as started_at_local,
        {{ to_local_timestamp('timesheets.ended_at', 'timesheets.timezone') }} as ended_at_local,
        timesheets.timezone,
        timesheets.date_tz,
        cast({{ dbt.date_trunc('week', 'timesheets.date_tz') }} as date) as week_start_date,
        cast({{ dbt.date_trunc('month', 'timesheets.date_tz') }} as date) as month_start_date,
        timesheets.duration_seconds,
        timesheets.duration_hours,
        timesheets.billable_seconds,
        {{ seconds_to_hours('timesheets.billable_seconds') }} as billable_hours,
        timesheets.break_seconds,

        ---------- flags
        timesheets.is_running,
        timesheets.is_billable,
        activities.is_billable as activity_is_billable,
        timesheets.is_exported,

        ---------- money (the customer's currency)
        timesheets.revenue,
        timesheets.internal_cost,
        timesheets.rate_amount,
        timesheets.hourly_rate,
        timesheets.fixed_rate_amount,

        ---------- tags (listed once, in macros/timesheet_facts_model.sql: the incremental
        ---------- refresh reads them from the aggregate filtered on its key)
        {%- for column, expression in timesheet_facts_tag_columns().items() %}
            {{ expression | replace('{t}', 'timesheet_tags') }} as {{ column }},
        {%- endfor %}

        ---------- other Kimai columns
        timesheets.description,
        timesheets.category,
        timesheets.modified_at,
        timesheets.synced_at

    from timesheets
    left join users
        on timesheets.user_id = users.user_id
    left join activities
        on timesheets.activity_id = activities.activity_id
    left join projects
        on timesheets.project_id = projects.project_id
    left join timesheet_tags
        on timesheets.timesheet_id = timesheet_tags.timesheet_id

)

select * from joined
