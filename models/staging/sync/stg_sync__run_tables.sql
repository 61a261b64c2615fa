with

source as (

    select * from {{ source('sync', 'sync_run_tables') }}

),

renamed as (

    select
        run_id,
        table_name,
        kimai_rows,
        replica_rows_before,
        replica_rows_after,
        rows_read,
        inserted as rows_inserted,
        updated as rows_updated,
        deleted as rows_deleted,
        cursor_before,
        cursor_after,
        seconds as duration_seconds,
        reconciled as is_reconciled,
        differences_found,
        differences_unrepaired,
        kimai_bytes_read,
        orphans_reread,
        recorded_at

    from source

)

select * from renamed
