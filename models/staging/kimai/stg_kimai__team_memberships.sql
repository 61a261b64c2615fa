with

source as (

    select * from {{ source('kimai', 'replica_kimai_users_teams') }}

),

renamed as (

    select
        id as membership_id,
        user_id,
        team_id,
        -- a team may have several teamleads
        teamlead as is_teamlead,
        synced_at

    from source

)

select * from renamed
