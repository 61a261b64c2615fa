with

source as (

    select * from {{ source('kimai', 'replica_kimai_users') }}

),

renamed as (

    select
        ----------  ids
        id as user_id,
        supervisor_id as supervisor_user_id,

        ---------- text
        username,
        alias,
        -- the name Kimai shows: the alias, else the login name
        coalesce(nullif(alias, ''), username) as user_name,
        email,
        title as job_title,
        account as account_number,
        auth as auth_method,
        color,

        ---------- booleans
        enabled as is_enabled,
        system_account as is_system_account,

        ---------- timestamps (UTC)
        registration_date as registered_at,
        last_login as last_login_at,
        synced_at

    from source

)

select * from renamed
