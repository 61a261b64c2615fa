with

projects as (

    select * from {{ ref('int_projects_joined_to_overlays') }}

),

money as (

    select * from {{ ref('int_project_money_collected') }}

),

totals as (

    select * from {{ ref('int_project_timesheet_totals') }}

),

tags as (

    select
        project_id,
        project_tags_array
    from {{ ref('int_project_tags_aggregated') }}

),

final as (

    select
        ---------- identity
        projects.project_id,
        projects.origin,
        projects.kimai_project_id,
        projects.override_id,
        projects.project_name,
        projects.project_number,
        projects.order_number,
        projects.project_comment,
        projects.color,
        projects.timezone,

        ---------- customer
        projects.customer_id,
        projects.customer_name,
        projects.currency,

        ---------- flags and status
        projects.is_visible,
        projects.is_billable,
        projects.is_global_activities_allowed,
        projects.is_prospective,
        projects.status_id,
        projects.status_name,
        projects.override_notes,

        ---------- tags
        projects.project_tags,
        coalesce(tags.project_tags_array, {{ empty_tag_array() }}) as project_tags_array,
        projects.project_tag_count,

        ---------- money collected
        money.payments_collected,
        money.payment_count,
        money.payments_total,
        money.money_collected_override,
        money.money_collected,
        money.money_collected_source,

        ---------- budgets, as Kimai computes them (closed billable work counts against them)
        projects.budget,
        projects.budget_type,
        projects.time_budget_seconds,
        {{ seconds_to_hours('projects.time_budget_seconds') }} as time_budget_hours,
        {{ is_monthly_budget(
            'projects.budget_type', 'projects.budget', 'projects.time_budget_seconds'
        ) }}
        as is_monthly_budget,
        {{ budget_figures(
            'projects.budget',
            'projects.time_budget_seconds',
            'coalesce(totals.revenue, 0)',
            'coalesce(totals.billable_seconds, 0)',
            'coalesce(totals.internal_cost, 0)',
            'not ' ~ is_monthly_budget('projects.budget_type', 'projects.budget', 'projects.time_budget_seconds'),
        ) }},

        ---------- work recorded (finished timesheets; running timers counted apart)
        cast(coalesce(totals.timesheet_count, 0) as {{ dbt.type_bigint() }}) as timesheet_count,
        cast(coalesce(totals.running_timesheet_count, 0) as {{ dbt.type_bigint() }})
        as running_timesheet_count,
        cast(coalesce(totals.duration_seconds, 0) as {{ dbt.type_bigint() }}) as duration_seconds,
        cast(coalesce(totals.hours_recorded, 0) as numeric(18, 6)) as hours_recorded,
        cast(coalesce(totals.billable_hours, 0) as numeric(18, 6)) as billable_hours,
        cast(coalesce(totals.revenue, 0) as numeric(18, 4)) as revenue,
        totals.first_date_tz,
        totals.last_date_tz,

        ---------- timestamps (UTC)
        projects.ordered_at,
        projects.starts_at,
        projects.ends_at,
        projects.created_at,
        projects.override_updated_at,
        projects.synced_at

    from projects
    left join money
        on projects.project_id = money.project_id
    left join totals
        on projects.project_id = totals.project_id
    left join tags
        on projects.project_id = tags.project_id

)

select * from final
