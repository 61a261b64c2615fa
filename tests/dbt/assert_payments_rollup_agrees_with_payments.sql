{#-
    Atlas's project_payments_rollup is a cache of the payments that Atlas recomputes on a
    schedule, so it may legitimately lag behind `payments`. A (project, currency) whose
    cached total differs from the payments is reported only when the difference cannot be
    that lag:
      * the cache row was computed after the newest change among those payments
        (as_of >= their latest created_at/updated_at) and still differs, or
      * the cache is older than var payments_rollup_max_lag_hours (default 24): the
        recompute has stopped.
    A (project, currency) with payments but no cache row is judged with the newest as_of
    of the whole cache (the last recompute). A payment deleted after the last recompute is
    indistinguishable from a wrong cache until the next recompute; hence the default
    severity `warn` (var payments_rollup_check_severity): the BI models never read the
    cache (money comes from `payments`), so a stale cache must not stop the build.
-#}
{{ config(severity=var('payments_rollup_check_severity', 'warn')) }}

with

compared as (

    select * from {{ ref('int_payments_rollup_compared') }}

),

last_recompute as (

    select max(as_of) as as_of from {{ ref('stg_atlas__project_payments_rollup') }}

),

judged as (

    select
        compared.*,
        coalesce(compared.rollup_as_of, last_recompute.as_of) as effective_as_of

    from compared
    cross join last_recompute
    where not compared.is_consistent

)

select *
from judged
where effective_as_of >= payments_last_changed_at
    or (payments_last_changed_at is null and effective_as_of is not null)
    or effective_as_of < {{ dbt.dateadd(
        'hour',
        -1 * (var('payments_rollup_max_lag_hours', 24) | int),
        dbt.current_timestamp()
    ) }}
