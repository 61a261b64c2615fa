-- One row per (table, row, column, rule): every value in Kimai that the replica holds
-- under a data rule (the sync could not copy it as it is) or that no report should take
-- at face value. Empty when Kimai's data is clean. Served as vw_data_issues, counted per
-- table in vw_sync_health.

with

read_under_rule as (

    select * from {{ ref('stg_kimai__data_issues') }}

),

kimai_checks as (

    select * from {{ ref('int_timesheet_data_checks') }}

),

final as (

    select
        table_name,
        row_key,
        column_name,
        rule,
        raw_value,
        first_seen_at
    from read_under_rule

    union all

    select
        table_name,
        row_key,
        column_name,
        rule,
        raw_value,
        first_seen_at
    from kimai_checks

)

select * from final
