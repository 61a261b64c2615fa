with

source as (

    select * from {{ source('atlas', 'project_payments_rollup') }}

),

renamed as (

    select
        id as rollup_id,
        kimai_project_id,
        override_project_id as override_id,
        cast(upper(trim(currency)) as {{ dbt.type_string() }}) as currency,
        amount_minor,
        {{ minor_to_major('amount_minor', 'upper(trim(currency))') }} as amount,
        as_of

    from source

)

select * from renamed
