with

source as (

    select * from {{ source('atlas', 'project_statuses') }}

),

renamed as (

    select
        id as status_id,
        name as status_name,
        code as status_code,
        is_active,
        sort_order,
        created_at,
        updated_at

    from source

)

select * from renamed
