-- Fails when the most recent reconciliation of a table left rows that still differ from
-- Kimai (the run repaired, re-checked, and something remained).

select table_name, last_reconciled_at, differences_unrepaired
from {{ ref('int_sync_table_latest') }}
where differences_unrepaired > 0
