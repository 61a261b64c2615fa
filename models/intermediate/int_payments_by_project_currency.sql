-- One row per project and currency with at least one payment: the exact total in minor
-- units (bigint sum) and in major units. A payment recorded against an overlay row belongs
-- to that row's Kimai project, or to the prospective project the row is (-id). Payments
-- that name no project are left out.

with

payments as (

    select * from {{ ref('stg_atlas__payments') }}

),

overrides as (

    select
        override_id,
        kimai_project_id
    from {{ ref('stg_atlas__overrides_projects') }}

),

resolved as (

    select
        coalesce(
            payments.kimai_project_id,
            overrides.kimai_project_id,
            -1 * overrides.override_id
        ) as project_id,
        payments.currency,
        payments.amount_minor,
        payments.received_at,
        payments.created_at,
        payments.updated_at

    from payments
    left join overrides
        on payments.override_id = overrides.override_id

),

aggregated as (

    select
        project_id,
        currency,
        count(*) as payment_count,
        cast(sum(amount_minor) as {{ dbt.type_bigint() }}) as amount_minor,
        max(received_at) as last_received_at,
        max(case when updated_at > created_at then updated_at else created_at end)
        as last_changed_at

    from resolved
    where project_id is not null
    group by project_id, currency

),

final as (

    select
        project_id,
        currency,
        payment_count,
        amount_minor,
        {{ minor_to_major('amount_minor', 'currency') }} as amount,
        last_received_at,
        last_changed_at

    from aggregated

)

select * from final
