{#-
    One row per (change_id, timesheet_id): each row of the sync's change log with the
    timesheets whose fact row it may change (the rules of docs/models.md, "Materialization
    of vw_timesheet_facts"). int_timesheet_facts_materialized recomputes the timesheets of
    the log rows after the position it stored. Ephemeral: it runs inside that model's
    statement, in the same snapshot, with the position filter pushed into every branch.
    Projects are not here: Atlas's overlays change them without a log row, so the model
    compares their columns with its stored rows instead. `rewrite` rows name no key: they
    make the model recompute every row.
-#}
{{
    config(
        enabled=(var('timesheet_facts_materialization', 'view') == 'table_incremental'),
        materialized='ephemeral',
    )
}}

with

changes as (

    select
        change_id,
        table_name,
        key_1
    from {{ ref('stg_sync__change_log') }}
    where change <> 'rewrite'

),

timesheets as (

    select
        timesheet_id,
        user_id,
        activity_id
    from {{ ref('stg_kimai__timesheets') }}

),

-- a written or deleted timesheet or tag pair: key_1 is the timesheet id
written as (

    select
        change_id,
        key_1 as timesheet_id
    from changes
    where table_name in ('timesheets', 'timesheet_tags')

),

of_users as (

    select
        changes.change_id,
        timesheets.timesheet_id
    from changes
    inner join timesheets
        on changes.key_1 = timesheets.user_id
    where changes.table_name = 'users'

),

of_activities as (

    select
        changes.change_id,
        timesheets.timesheet_id
    from changes
    inner join timesheets
        on changes.key_1 = timesheets.activity_id
    where changes.table_name = 'activities'

),

-- a renamed Kimai tag: the timesheets carrying it now (a deleted tag's pairs are logged
-- themselves, by the cascade that removed them)
of_tags as (

    select
        changes.change_id,
        timesheet_tags.timesheet_id
    from changes
    inner join {{ ref('stg_kimai__timesheet_tags') }} as timesheet_tags
        on changes.key_1 = timesheet_tags.tag_id
    where changes.table_name = 'tags'

)

select * from written
union all
select * from of_users
union all
select * from of_activities
union all
select * from of_tags
