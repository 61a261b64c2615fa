with

source as (

    select * from {{ source('atlas', 'payments') }}

),

renamed as (

    select
        ----------  ids
        id as payment_id,
        source_id as payment_source_id,
        source_ref,
        kimai_project_id,
        override_project_id as override_id,

        ---------- money: exact, never float
        amount_minor,
        {{ minor_to_major('amount_minor', 'upper(trim(currency))') }} as amount,
        cast(upper(trim(currency)) as {{ dbt.type_string() }}) as currency,

        ---------- text
        notes as payment_notes,
        cast(meta_json as {{ dbt.type_string() }}) as meta_json_text,

        ---------- timestamps (UTC)
        received_at,
        created_at,
        updated_at

    from source

)

select * from renamed
