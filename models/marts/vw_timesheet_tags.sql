{#-
    One row per (timesheet, Kimai tag): the tag bridge for "hours per tag" with exact
    matching (filter tag_name = 'bug', never a substring). Summing duration_hours over one
    tag gives exactly that tag's hours; over several tags a timesheet counts once per tag.
    Hidden tags included. The measures are the timesheet's, from the same fact rows as
    vw_timesheet_facts.
-#}
with

pairs as (

    select
        timesheet_id,
        tag_id
    from {{ ref('stg_kimai__timesheet_tags') }}

),

tags as (

    select
        tag_id,
        tag_name
    from {{ ref('stg_kimai__tags') }}

),

facts as (

    select
        timesheet_id,
        date_tz,
        user_id,
        project_id,
        customer_id,
        activity_id,
        duration_seconds,
        duration_hours,
        is_billable,
        revenue,
        currency

    from {{ ref(timesheet_facts_model()) }}

)

select
    pairs.timesheet_id,
    pairs.tag_id,
    tags.tag_name,
    facts.date_tz,
    facts.user_id,
    facts.project_id,
    facts.customer_id,
    facts.activity_id,
    facts.duration_seconds,
    facts.duration_hours,
    facts.is_billable,
    facts.revenue,
    facts.currency

from pairs
inner join facts
    on pairs.timesheet_id = facts.timesheet_id
inner join tags
    on pairs.tag_id = tags.tag_id
