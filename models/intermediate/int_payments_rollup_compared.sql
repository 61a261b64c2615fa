-- One row per project and currency found in the payments or in Atlas's rollup cache
-- (project_payments_rollup): both totals in minor units side by side, for the check that
-- the cache agrees with the payments (tests/dbt/assert_payments_rollup_agrees_with_payments.sql).

with

payments as (

    select * from {{ ref('int_payments_by_project_currency') }}

),

rollup_rows as (

    select * from {{ ref('stg_atlas__project_payments_rollup') }}

),

overrides as (

    select
        override_id,
        kimai_project_id
    from {{ ref('stg_atlas__overrides_projects') }}

),

rollup_resolved as (

    select
        coalesce(
            rollup_rows.kimai_project_id,
            overrides.kimai_project_id,
            -1 * overrides.override_id
        ) as project_id,
        rollup_rows.currency,
        cast(sum(rollup_rows.amount_minor) as {{ dbt.type_bigint() }}) as amount_minor,
        min(rollup_rows.as_of) as as_of

    from rollup_rows
    left join overrides
        on rollup_rows.override_id = overrides.override_id
    group by 1, 2

),

compared as (

    select
        coalesce(payments.project_id, rollup_resolved.project_id) as project_id,
        coalesce(payments.currency, rollup_resolved.currency) as currency,
        coalesce(payments.amount_minor, 0) as payments_amount_minor,
        rollup_resolved.amount_minor as rollup_amount_minor,
        coalesce(rollup_resolved.amount_minor, 0) - coalesce(payments.amount_minor, 0)
        as difference_minor,
        payments.last_changed_at as payments_last_changed_at,
        rollup_resolved.as_of as rollup_as_of,
        coalesce(rollup_resolved.amount_minor, 0) = coalesce(payments.amount_minor, 0)
        as is_consistent

    from payments
    full outer join rollup_resolved
        on
            payments.project_id = rollup_resolved.project_id
            and payments.currency = rollup_resolved.currency

)

select * from compared
where project_id is not null
