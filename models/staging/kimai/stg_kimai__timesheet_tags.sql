with

source as (

    select * from {{ source('kimai', 'replica_kimai_timesheet_tags') }}

),

renamed as (

    select
        timesheet_id,
        tag_id,
        synced_at

    from source

)

select * from renamed
