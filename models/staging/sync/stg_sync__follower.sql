-- One row per follower feed: its heartbeat, as the follower last wrote it.

with

source as (

    select * from {{ source('sync', 'sync_follower') }}

),

renamed as (

    select
        feed,
        last_tick_at,
        caught_up_at,
        status as follower_status,
        error as follower_error

    from source

)

select * from renamed
