with

source as (

    select * from {{ source('kimai', 'replica_kimai_customers') }}

),

renamed as (

    select
        ----------  ids
        id as customer_id,
        invoice_template_id,

        ---------- text
        name as customer_name,
        number as customer_number,
        company as company_name,
        contact as contact_name,
        comment as customer_comment,
        country as country_code,
        currency,
        timezone,
        language as document_language,
        color,
        vat_id,
        buyer_reference,
        invoice_text,
        address,
        address_line1,
        address_line2,
        address_line3,
        postcode,
        city,
        phone,
        fax,
        mobile,
        email,
        invoice_email,
        homepage,

        ---------- booleans
        visible as is_visible,
        billable as is_billable,

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
