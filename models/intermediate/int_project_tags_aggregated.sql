-- One row per project (Kimai id, or -overrides_projects.id for a prospective project) that
-- has at least one taxonomy tag: the tags as `Taxonomy: Term` joined by '; ', ordered by
-- taxonomy then term (case-insensitive), and the same labels as an array.

with

labelled as (

    -- distinct labels: two terms of one taxonomy may share a name (their codes differ)
    select distinct
        project_id,
        taxonomy_name,
        term_name,
        tag_label
    from {{ ref('int_project_tag_terms') }}

),

aggregated as (

    select
        project_id,
        {{ dbt.listagg(
            'tag_label',
            "'; '",
            'order by ' ~ sort_key('taxonomy_name') ~ ', ' ~ sort_key('term_name')
        ) }} as project_tags,
        {{ tag_array_agg('tag_label', sort_key('taxonomy_name') ~ ', ' ~ sort_key('term_name')) }}
        as project_tags_array,
        count(*) as project_tag_count

    from labelled
    group by project_id

)

select * from aggregated
