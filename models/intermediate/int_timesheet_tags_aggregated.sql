-- One row per timesheet with at least one Kimai tag: the tag names joined by ', ' in name
-- order (case-insensitive; Kimai tag names are unique case-insensitively), hidden tags
-- included (also as an array, same order), and their number.

with

timesheet_tags as (

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

)

select
    timesheet_tags.timesheet_id,
    {{ dbt.listagg('tags.tag_name', "', '", 'order by ' ~ sort_key('tags.tag_name')) }}
    as timesheet_tags,
    {{ tag_array_agg('tags.tag_name', sort_key('tags.tag_name')) }} as timesheet_tags_array,
    count(*) as timesheet_tag_count

from timesheet_tags
inner join tags
    on timesheet_tags.tag_id = tags.tag_id
group by timesheet_tags.timesheet_id
