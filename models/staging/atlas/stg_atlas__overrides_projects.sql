with

source as (

    select * from {{ source('atlas', 'overrides_projects') }}

),

renamed as (

    select
        ----------  ids
        id as override_id,
        kimai_project_id,
        status_id,
        updated_by_user_id,

        ---------- overrides (NULL = no override)
        cast(money_collected as numeric(18, 2)) as money_collected_override,
        is_prospective,

        ---------- prospective projects keep their fields in extras_json
        {{ json_text('extras_json', 'name') }} as prospective_project_name,
        cast({{ json_text('extras_json', 'customer_id') }} as {{ dbt.type_bigint() }})
        as prospective_customer_id,
        cast({{ json_text('extras_json', 'currency') }} as {{ dbt.type_string() }})
        as prospective_currency,

        ---------- text
        notes as override_notes,
        source as override_source,
        updated_by_email,
        cast(extras_json as {{ dbt.type_string() }}) as extras_json_text,

        ---------- timestamps (UTC)
        created_at,
        updated_at

    from source

)

select * from renamed
