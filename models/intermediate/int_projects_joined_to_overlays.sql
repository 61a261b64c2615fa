-- One row per project: every Kimai project (origin 'kimai', its own id) with its Atlas
-- override row if any, plus every prospective project of Atlas (an overrides_projects row
-- without a Kimai id; origin 'atlas', id -overrides_projects.id). Adds the customer, the
-- status name and the taxonomy tags. Override rows for Kimai projects that no longer exist
-- are left out (normal data: Atlas keeps them, Kimai deleted the project).

with

projects as (

    select * from {{ ref('stg_kimai__projects') }}

),

customers as (

    select * from {{ ref('stg_kimai__customers') }}

),

overrides as (

    select * from {{ ref('stg_atlas__overrides_projects') }}

),

statuses as (

    select * from {{ ref('stg_atlas__project_statuses') }}

),

project_tags as (

    select * from {{ ref('int_project_tags_aggregated') }}

),

kimai_projects as (

    select
        projects.project_id,
        'kimai' as origin,
        projects.project_id as kimai_project_id,
        overrides.override_id,
        projects.project_name,
        projects.project_number,
        projects.order_number,
        projects.project_comment,
        projects.customer_id,
        projects.color,
        projects.timezone,
        projects.is_visible,
        projects.is_billable,
        projects.is_global_activities_allowed,
        projects.budget,
        projects.budget_type,
        projects.time_budget_seconds,
        projects.ordered_at,
        projects.starts_at,
        projects.ends_at,
        projects.created_at,
        false as is_prospective,
        overrides.status_id,
        overrides.money_collected_override,
        overrides.override_notes,
        overrides.updated_at as override_updated_at,
        projects.synced_at

    from projects
    left join overrides
        on projects.project_id = overrides.kimai_project_id

),

prospective_projects as (

    select
        -1 * overrides.override_id as project_id,
        'atlas' as origin,
        cast(null as {{ dbt.type_bigint() }}) as kimai_project_id,
        overrides.override_id,
        coalesce(
            overrides.prospective_project_name,
            'Prospective project ' || cast(overrides.override_id as {{ dbt.type_string() }})
        ) as project_name,
        cast(null as {{ dbt.type_string() }}) as project_number,
        cast(null as {{ dbt.type_string() }}) as order_number,
        cast(null as {{ dbt.type_string() }}) as project_comment,
        customers.customer_id,
        cast(null as {{ dbt.type_string() }}) as color,
        cast(null as {{ dbt.type_string() }}) as timezone,
        cast(null as {{ dbt.type_boolean() }}) as is_visible,
        cast(null as {{ dbt.type_boolean() }}) as is_billable,
        cast(null as {{ dbt.type_boolean() }}) as is_global_activities_allowed,
        cast(null as numeric(18, 4)) as budget,
        cast(null as {{ dbt.type_string() }}) as budget_type,
        cast(null as {{ dbt.type_bigint() }}) as time_budget_seconds,
        cast(null as {{ dbt.type_timestamp() }}) as ordered_at,
        cast(null as {{ dbt.type_timestamp() }}) as starts_at,
        cast(null as {{ dbt.type_timestamp() }}) as ends_at,
        overrides.created_at,
        true as is_prospective,
        overrides.status_id,
        overrides.money_collected_override,
        overrides.override_notes,
        overrides.updated_at as override_updated_at,
        cast(null as {{ dbt.type_timestamp() }}) as synced_at

    from overrides
    left join customers
        on overrides.prospective_customer_id = customers.customer_id
    where overrides.kimai_project_id is null

),

unioned as (

    select * from kimai_projects
    union all
    select * from prospective_projects

),

joined as (

    select
        unioned.*,
        customers.customer_name,
        -- the customer's currency; a prospective project without a Kimai customer may name
        -- its currency in extras_json
        coalesce(customers.currency, overrides.prospective_currency) as currency,
        statuses.status_name,
        coalesce(project_tags.project_tags, '') as project_tags,
        coalesce(project_tags.project_tag_count, 0) as project_tag_count

    from unioned
    left join customers
        on unioned.customer_id = customers.customer_id
    left join overrides
        on unioned.override_id = overrides.override_id
    left join statuses
        on unioned.status_id = statuses.status_id
    left join project_tags
        on unioned.project_id = project_tags.project_id

)

select * from joined
