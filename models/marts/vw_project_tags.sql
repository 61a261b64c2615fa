{#-
    One row per (project, taxonomy term): the tag bridge for "projects with tag X" with
    exact matching (filter `tag` = 'Region: APAC', or taxonomy_name and term_name). Kimai
    and prospective projects; tags on projects gone from Kimai are left out, so every
    project_id is in vw_projects.
-#}
with

terms as (

    select * from {{ ref('int_project_tag_terms') }}

),

projects as (

    select project_id from {{ ref('int_projects_joined_to_overlays') }}

)

select
    terms.project_id,
    terms.taxonomy_id,
    terms.taxonomy_name,
    terms.taxonomy_term_id,
    terms.term_name,
    terms.tag_label as tag

from terms
inner join projects
    on terms.project_id = projects.project_id
