-- One row per replicated table that was ever synced: its latest sync and its latest
-- reconciliation, from the run audit.

with

run_tables as (

    select * from {{ ref('stg_sync__run_tables') }}

),

ranked as (

    select
        run_tables.*,
        row_number() over (
            partition by run_tables.table_name
            order by run_tables.recorded_at desc
        ) as sync_rank,
        row_number() over (
            partition by run_tables.table_name, run_tables.is_reconciled
            order by run_tables.recorded_at desc
        ) as reconcile_rank

    from run_tables

),

last_sync as (

    select * from ranked
    where sync_rank = 1

),

last_reconcile as (

    select * from ranked
    where is_reconciled and reconcile_rank = 1

),

final as (

    select
        last_sync.table_name,
        last_sync.run_id as last_run_id,
        last_sync.recorded_at as last_synced_at,
        last_sync.kimai_rows,
        last_sync.replica_rows_after as replica_rows_after_last_sync,
        last_sync.rows_inserted as last_rows_inserted,
        last_sync.rows_updated as last_rows_updated,
        last_sync.rows_deleted as last_rows_deleted,
        last_sync.cursor_after as newest_modified_at,
        last_reconcile.recorded_at as last_reconciled_at,
        last_reconcile.differences_found as last_reconcile_differences_found,
        last_reconcile.differences_unrepaired

    from last_sync
    left join last_reconcile
        on last_sync.table_name = last_reconcile.table_name

)

select * from final
