-- Only the system settings on the sync's allow-list reach the replica (the financial
-- year); Kimai's mail, LDAP, SAML and plugin settings stay in Kimai.

with

source as (

    select * from {{ source('kimai', 'replica_kimai_configuration') }}

),

renamed as (

    select
        id as setting_id,
        name as setting_name,
        value as setting_value,
        synced_at

    from source

)

select * from renamed
