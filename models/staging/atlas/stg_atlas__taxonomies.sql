with

source as (

    select * from {{ source('atlas', 'taxonomies') }}

),

renamed as (

    select
        id as taxonomy_id,
        name as taxonomy_name,
        code as taxonomy_code,
        description as taxonomy_description,
        is_active,
        sort_order,
        created_at,
        updated_at

    from source

)

select * from renamed
