with

source as (

    select * from {{ source('kimai', 'replica_kimai_projects') }}

),

renamed as (

    select
        ----------  ids
        id as project_id,
        customer_id,

        ---------- text
        name as project_name,
        number as project_number,
        order_number,
        comment as project_comment,
        color,
        timezone,
        invoice_text,

        ---------- booleans
        visible as is_visible,
        billable as is_billable,
        global_activities as is_global_activities_allowed,

        ---------- budgets (money in the customer's currency, exact decimal)
        {{ to_money('budget') }} as budget,
        budget_type,
        time_budget as time_budget_seconds,

        ---------- timestamps (UTC)
        order_date as ordered_at,
        "start" as starts_at,
        "end" as ends_at,
        created_at,
        synced_at

    from source

)

select * from renamed
