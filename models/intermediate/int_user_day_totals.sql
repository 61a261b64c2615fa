-- One row per (user, local day) with finished work: recorded and billable seconds, the
-- day being date_tz, the record's own local day (Kimai's axis A, as its working-time
-- screens and user reports count: a record belongs wholly to the day it starts).

select
    user_id,
    date_tz,
    cast(sum(duration_seconds) as {{ dbt.type_bigint() }}) as duration_seconds,
    cast(sum(billable_seconds) as {{ dbt.type_bigint() }}) as billable_seconds
from {{ ref('int_timesheets_valued') }}
where not is_running
group by user_id, date_tz
