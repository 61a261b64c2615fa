with

source as (

    select * from {{ source('atlas', 'payment_sources') }}

),

renamed as (

    select
        id as payment_source_id,
        code as payment_source_code,
        name as payment_source_name,
        description as payment_source_description,
        is_active,
        created_at,
        updated_at

    from source

)

select * from renamed
