with

counts as (

    select * from {{ ref('int_replica_row_counts') }}

),

latest as (

    select * from {{ ref('int_sync_table_latest') }}

),

served_build as (

    select
        run_id,
        published_at
    from {{ ref('int_bi_builds') }}
    where is_served

),

data_issues as (

    select
        table_name,
        count(*) as data_issue_rows
    from {{ ref('int_data_issues') }}
    group by table_name

),

last_build as (

    select
        run_id,
        ended_at,
        build_status,
        build_failures
    from {{ ref('int_bi_builds') }}
    where is_last_ended

),

follower as (

    select
        follower_status,
        caught_up_at
    from {{ ref('stg_sync__follower') }}
    -- the feed that ticked last (poll, or binlog with KIMAI_BINLOG=on)
    order by last_tick_at desc
    limit 1

),

synced as (

    -- the follower's quiet ticks prove every table current without recording a result
    select
        counts.table_name,
        case
            when latest.last_synced_at is null or follower.caught_up_at > latest.last_synced_at
                then follower.caught_up_at
            else latest.last_synced_at
        end as last_synced_at
    from counts
    left join latest
        on counts.table_name = latest.table_name
    left join follower
        on true

),

final as (

    select
        counts.table_name,
        synced.last_synced_at,
        counts.replica_rows,
        latest.kimai_rows,
        cast(
            {{ dbt.datediff('synced.last_synced_at', dbt.current_timestamp(), 'second') }}
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
        latest.last_run_id,
        served_build.published_at as served_build_published_at,
        served_build.run_id as served_build_run_id,
        last_build.build_status as last_build_status,
        last_build.ended_at as last_build_ended_at,
        last_build.build_failures as last_build_failures,
        coalesce(data_issues.data_issue_rows, 0) as data_issue_rows,
        follower.follower_status,
        follower.caught_up_at as follower_caught_up_at

    from counts
    inner join synced
        on counts.table_name = synced.table_name
    left join latest
        on counts.table_name = latest.table_name
    left join follower
        on true
    left join served_build
        on true
    left join last_build
        on true
    left join data_issues
        on counts.table_name = data_issues.table_name

)

select * from final
