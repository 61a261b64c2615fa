with

source as (

    select * from {{ source('kimai', 'replica_kimai_tags') }}

),

renamed as (

    select
        id as tag_id,
        name as tag_name,
        color,
        -- nullable in Kimai's DB (the app always writes 0/1); NULL read as Kimai's default, visible
        coalesce(visible, true) as is_visible,
        synced_at

    from source

)

select * from renamed
