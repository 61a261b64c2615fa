-- One row per budgeted entity Kimai keeps budgets on: every Kimai project, customer and
-- activity (budget_scope, scope_id), with its budget, its currency and whether the budget
-- is monthly. A project activity's money is in its project's customer's currency; a global
-- activity's work spans customers, so its currency is NULL (Kimai adds the amounts as
-- they are, and so do the figures here).

with

projects as (

    select * from {{ ref('stg_kimai__projects') }}

),

customers as (

    select * from {{ ref('stg_kimai__customers') }}

),

activities as (

    select * from {{ ref('stg_kimai__activities') }}

),

scopes as (

    select
        'project' as budget_scope,
        projects.project_id as scope_id,
        projects.project_name as scope_name,
        customers.currency,
        projects.budget,
        projects.time_budget_seconds,
        projects.budget_type
    from projects
    left join customers
        on projects.customer_id = customers.customer_id

    union all

    select
        'customer' as budget_scope,
        customer_id as scope_id,
        customer_name as scope_name,
        currency,
        budget,
        time_budget_seconds,
        budget_type
    from customers

    union all

    select
        'activity' as budget_scope,
        activities.activity_id as scope_id,
        activities.activity_name as scope_name,
        customers.currency,
        activities.budget,
        activities.time_budget_seconds,
        activities.budget_type
    from activities
    left join projects
        on activities.project_id = projects.project_id
    left join customers
        on projects.customer_id = customers.customer_id

),

final as (

    select
        budget_scope,
        scope_id,
        scope_name,
        currency,
        budget,
        time_budget_seconds,
        budget_type,
        {{ is_monthly_budget('budget_type', 'budget', 'time_budget_seconds') }} as is_monthly_budget
    from scopes

)

select * from final
