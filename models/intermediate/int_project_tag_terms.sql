-- One row per (project, taxonomy term): the taxonomy tags of every project (Kimai id, or
-- -overrides_projects.id for a prospective project), with the `Taxonomy: Term` label.

with

project_tags as (

    select * from {{ ref('stg_atlas__project_tags') }}

),

overrides as (

    select
        override_id,
        kimai_project_id
    from {{ ref('stg_atlas__overrides_projects') }}

),

terms as (

    select * from {{ ref('stg_atlas__taxonomy_terms') }}

),

taxonomies as (

    select * from {{ ref('stg_atlas__taxonomies') }}

),

labelled as (

    -- a tag on an overlay row belongs to that row's Kimai project, or to the prospective
    -- project the row is; one tag reached both ways counts once
    select distinct
        coalesce(
            project_tags.kimai_project_id,
            overrides.kimai_project_id,
            -1 * overrides.override_id
        ) as project_id,
        terms.taxonomy_term_id,
        taxonomies.taxonomy_id,
        taxonomies.taxonomy_name,
        terms.term_name,
        taxonomies.taxonomy_name || ': ' || terms.term_name as tag_label

    from project_tags
    inner join terms
        on project_tags.taxonomy_term_id = terms.taxonomy_term_id
    inner join taxonomies
        on terms.taxonomy_id = taxonomies.taxonomy_id
    left join overrides
        on project_tags.override_id = overrides.override_id

)

select * from labelled
where project_id is not null
