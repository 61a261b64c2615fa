with

source as (

    select * from {{ source('kimai', 'replica_kimai_teams') }}

),

renamed as (

    select
        id as team_id,
        name as team_name,
        color,
        synced_at

    from source

)

select * from renamed
