with

source as (

    select * from {{ source('atlas', 'project_tags') }}

),

renamed as (

    select
        id as project_tag_id,
        taxonomy_term_id,
        kimai_project_id,
        override_project_id as override_id,
        created_at,
        updated_at

    from source

)

select * from renamed
