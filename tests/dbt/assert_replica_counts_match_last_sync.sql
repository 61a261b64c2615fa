-- Fails when a replica table holds a different number of rows than Kimai had when the
-- last run synced it: rows lost or duplicated after the load, or written by something else.

-- set_level: a whole-set check; a delta build leaves it to the full audit (docs/models.md)
{{ config(tags=['set_level']) }}

select counts.table_name, counts.replica_rows, latest.kimai_rows
from {{ ref('int_replica_row_counts') }} as counts
inner join {{ ref('int_sync_table_latest') }} as latest
    on counts.table_name = latest.table_name
where counts.replica_rows <> latest.kimai_rows
