{{ config(grants=bi_grants()) }}

with

counts as (

    select * from {{ ref('int_replica_row_counts') }}

),

latest as (

    select * from {{ ref('int_sync_table_latest') }}

),

final as (

    select
        counts.table_name,
        latest.last_synced_at,
        counts.replica_rows,
        latest.kimai_rows,
        cast(
            {{ dbt.datediff('latest.last_synced_at', dbt.current_timestamp(), 'second') }}
            as {{ dbt.type_bigint() }}
        ) as lag_seconds,
        latest.newest_modified_at,
        latest.last_rows_inserted,
        latest.last_rows_updated,
        latest.last_rows_deleted,
        latest.last_reconciled_at,
        latest.last_reconcile_differences_found,
        latest.differences_unrepaired,
        coalesce(counts.replica_rows = latest.kimai_rows, false) as replica_matches_kimai_count,
        latest.last_run_id

    from counts
    left join latest
        on counts.table_name = latest.table_name

)

select * from final
