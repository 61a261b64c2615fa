with

source as (

    select * from {{ source('sync', 'sync_change_log') }}

),

renamed as (

    select
        change_id,
        -- the registry's short name (timesheets, timesheet_tags, ...); '*' for the log itself
        table_name,
        -- the row's key; for timesheet_tags key_1 is the timesheet id and key_2 the tag id
        key_1,
        key_2,
        -- insert, update, delete, or rewrite (anything in the table may have changed)
        change,
        logged_at

    from source

)

select * from renamed
