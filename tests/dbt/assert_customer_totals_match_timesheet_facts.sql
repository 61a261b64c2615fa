-- The marts agree with each other: per customer, vw_customers' hours, billable hours and
-- revenue equal the sums over vw_timesheet_facts, and vw_projects' sums per customer.

-- set_level: a whole-set check; a delta build leaves it to the full audit (docs/models.md)
{{ config(tags=['set_level']) }}

with

facts as (

    select
        customer_id,
        sum(duration_seconds) as duration_seconds,
        sum(billable_seconds) as billable_seconds,
        sum(revenue) as revenue

    from {{ ref('vw_timesheet_facts') }}
    group by customer_id

),

projects as (

    select
        customer_id,
        sum(hours_recorded) as hours_recorded,
        sum(revenue) as revenue

    from {{ ref('vw_projects') }}
    where origin = 'kimai'
    group by customer_id

),

customers as (

    select * from {{ ref('vw_customers') }}

)

select
    customers.customer_id,
    customers.hours_recorded,
    customers.revenue,
    facts.revenue as facts_revenue,
    projects.revenue as projects_revenue

from customers
left join facts
    on customers.customer_id = facts.customer_id
left join projects
    on customers.customer_id = projects.customer_id
where customers.duration_seconds <> coalesce(facts.duration_seconds, 0)
    or customers.billable_hours <> {{ seconds_to_hours('coalesce(facts.billable_seconds, 0)') }}
    or customers.revenue <> coalesce(facts.revenue, 0)
    or customers.revenue <> coalesce(projects.revenue, 0)
