with

source as (

    select * from {{ source('sync', 'sync_change_log_pruned') }}

),

renamed as (

    select
        pruned_through,
        pruned_at

    from source

)

select * from renamed
