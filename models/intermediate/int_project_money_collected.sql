-- One row per project (Kimai and prospective): the money collected. Precedence: a non-NULL
-- override in overrides_projects.money_collected wins (0.00 included); otherwise the total
-- of the payments in the project's own currency (0.00 when there are none). Payments in
-- other currencies are listed in `payments_collected` but never converted or added.

with

projects as (

    select
        project_id,
        currency,
        money_collected_override
    from {{ ref('int_projects_joined_to_overlays') }}

),

payments as (

    select * from {{ ref('int_payments_by_project_currency') }}

),

payments_per_project as (

    select
        project_id,
        {{ dbt.listagg(
            "currency || ' ' || " ~ money_text('amount', 'currency'),
            "'; '",
            'order by currency'
        ) }} as payments_collected,
        count(*) as payment_currency_count,
        cast(sum(payment_count) as {{ dbt.type_bigint() }}) as payment_count

    from payments
    group by project_id

),

final as (

    select
        projects.project_id,
        projects.currency,
        coalesce(payments_per_project.payments_collected, '') as payments_collected,
        cast(coalesce(payments_per_project.payment_count, 0) as {{ dbt.type_bigint() }})
        as payment_count,
        cast(coalesce(payments_per_project.payment_currency_count, 0) as {{ dbt.type_bigint() }})
        as payment_currency_count,
        cast(coalesce(same_currency.amount, 0) as numeric(18, 4)) as payments_total,
        projects.money_collected_override,
        cast(
            coalesce(projects.money_collected_override, same_currency.amount, 0)
            as numeric(18, 4)
        ) as money_collected,
        case
            when projects.money_collected_override is not null then 'override'
            when same_currency.amount is not null then 'payments'
            else 'none'
        end as money_collected_source

    from projects
    left join payments as same_currency
        on
            projects.project_id = same_currency.project_id
            and projects.currency = same_currency.currency
    left join payments_per_project
        on projects.project_id = payments_per_project.project_id

)

select * from final
