-- One row per (budget scope, entity, report month) in which an entity whose budget is
-- monthly has a record: the month is the one its start falls in, seen from the report
-- zone (Kimai's axis B: ATLAS_REPORT_TIMEZONE stands for the viewer). Sums as Kimai's
-- budget statistics: closed billable work counts against the budget, internal cost and
-- duration over every closed record; running records only count as records.
--
-- A table that every build recomputes whole, in place (macros/recomputed_in_place.sql):
-- finding each record's month converts every start, too much to repeat for each question
-- on vw_budget_months (a second at 1M timesheets). One
-- pass groups the records of monthly-budget entities by project, activity and month; the
-- three scopes fold those groups.

{{
    config(
        materialized='incremental',
        on_schema_change='sync_all_columns',
        pre_hook=["{{ recomputed_in_place() }}"],
    )
}}

with

scopes as (

    select
        budget_scope,
        scope_id
    from {{ ref('int_budget_scopes') }}
    where is_monthly_budget

),

projects as (

    select
        project_id,
        customer_id
    from {{ ref('stg_kimai__projects') }}

),

groups as (

    select
        timesheets.project_id,
        timesheets.activity_id,
        projects.customer_id,
        cast({{ dbt.date_trunc('month', to_report_date('timesheets.started_at')) }} as date)
        as report_month_start_date,
        cast(count(*) as {{ dbt.type_bigint() }}) as timesheet_count,
        sum(timesheets.duration_seconds) as duration_seconds,
        sum(timesheets.billable_seconds) as billable_seconds,
        sum(timesheets.revenue) as revenue,
        sum(timesheets.internal_cost) as internal_cost
    from {{ ref('int_timesheets_valued') }} as timesheets
    left join projects
        on timesheets.project_id = projects.project_id
    where
        timesheets.project_id in (
            select scopes.scope_id from scopes
            where scopes.budget_scope = 'project'
        )
        or timesheets.activity_id in (
            select scopes.scope_id from scopes
            where scopes.budget_scope = 'activity'
        )
        or projects.customer_id in (
            select scopes.scope_id from scopes
            where scopes.budget_scope = 'customer'
        )
    group by 1, 2, 3, 4

),

scoped as (

    select
        'project' as budget_scope,
        groups.project_id as scope_id,
        groups.*
    from groups
    where
        groups.project_id in (
            select scopes.scope_id from scopes
            where scopes.budget_scope = 'project'
        )

    union all

    select
        'customer' as budget_scope,
        groups.customer_id as scope_id,
        groups.*
    from groups
    where
        groups.customer_id in (
            select scopes.scope_id from scopes
            where scopes.budget_scope = 'customer'
        )

    union all

    select
        'activity' as budget_scope,
        groups.activity_id as scope_id,
        groups.*
    from groups
    where
        groups.activity_id in (
            select scopes.scope_id from scopes
            where scopes.budget_scope = 'activity'
        )

),

monthly as (

    select
        budget_scope,
        scope_id,
        report_month_start_date,
        cast(sum(timesheet_count) as {{ dbt.type_bigint() }}) as timesheet_count,
        cast(coalesce(sum(duration_seconds), 0) as {{ dbt.type_bigint() }}) as duration_seconds,
        cast(coalesce(sum(billable_seconds), 0) as {{ dbt.type_bigint() }}) as billable_seconds,
        cast(coalesce(sum(revenue), 0) as numeric(18, 4)) as revenue,
        cast(coalesce(sum(internal_cost), 0) as numeric(18, 4)) as internal_cost
    from scoped
    group by 1, 2, 3

)

select * from monthly
