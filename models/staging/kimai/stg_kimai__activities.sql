with

source as (

    select * from {{ source('kimai', 'replica_kimai_activities') }}

),

renamed as (

    select
        ----------  ids
        id as activity_id,
        project_id,

        ---------- text
        name as activity_name,
        number as activity_number,
        comment as activity_comment,
        color,
        invoice_text,

        ---------- booleans
        visible as is_visible,
        billable as is_billable,
        project_id is null as is_global,

        ---------- budgets (money in the customer's currency, exact decimal)
        {{ to_money('budget') }} as budget,
        budget_type,
        time_budget as time_budget_seconds,

        ---------- timestamps (UTC)
        created_at,
        synced_at

    from source

)

select * from renamed
