-- Only the preferences on the sync's allow-list reach the replica (zone, week start,
-- working-time contract); rates and every other preference stay in Kimai.

with

source as (

    select * from {{ source('kimai', 'replica_kimai_user_preferences') }}

),

renamed as (

    select
        id as preference_id,
        user_id,
        name as preference_name,
        -- a scalar stored as text, as Kimai stores it
        value as preference_value,
        synced_at

    from source

)

select * from renamed
