with

source as (

    select * from {{ source('atlas', 'taxonomy_terms') }}

),

renamed as (

    select
        id as taxonomy_term_id,
        taxonomy_id,
        name as term_name,
        code as term_code,
        description as term_description,
        is_active,
        sort_order,
        created_at,
        updated_at

    from source

)

select * from renamed
