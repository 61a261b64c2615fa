{#-
    One row per Kimai timesheet. A view in every mode: by default over int_timesheet_facts
    (computed on read); with `timesheet_facts_materialization: table_incremental` over the
    table int_timesheet_facts_materialized, kept equal to it by every build. Either way
    Metabase sees the same relation, columns and grants. The columns are listed, so the
    view depends on these columns only (never on the table's bookkeeping columns).
    The report-zone dates and the financial year are computed here, on read: they follow
    ATLAS_REPORT_TIMEZONE and Kimai's financial-year setting without rewriting a stored row.
-#}
{%- set facts_model = timesheet_facts_model() -%}
{%- set report_date = to_report_date('facts.started_at') -%}

select
    facts.timesheet_id,
    facts.user_id,
    facts.user_name,
    facts.username,
    facts.project_id,
    facts.project_name,
    facts.activity_id,
    facts.activity_name,
    facts.customer_id,
    facts.customer_name,
    facts.currency,
    facts.started_at,
    facts.ended_at,
    facts.started_at_local,
    facts.ended_at_local,
    facts.timezone,
    facts.date_tz,
    facts.week_start_date,
    facts.month_start_date,
    {{ report_date }} as report_date,
    cast({{ dbt.date_trunc('week', report_date) }} as date) as report_week_start_date,
    cast({{ dbt.date_trunc('month', report_date) }} as date) as report_month_start_date,
    {{ financial_year_start(
        'facts.date_tz', 'financial_year.start_month', 'financial_year.start_day'
    ) }}
    as financial_year_start_date,
    facts.duration_seconds,
    facts.duration_hours,
    facts.billable_seconds,
    facts.billable_hours,
    facts.break_seconds,
    facts.is_running,
    facts.is_billable,
    facts.project_is_billable,
    facts.activity_is_billable,
    facts.is_exported,
    facts.revenue,
    facts.internal_cost,
    facts.rate_amount,
    facts.hourly_rate,
    facts.fixed_rate_amount,
    facts.project_status_id,
    facts.project_status,
    facts.project_tags,
    facts.timesheet_tags,
    facts.timesheet_tags_array,
    facts.description,
    facts.category,
    facts.modified_at,
    facts.synced_at

from {{ ref(facts_model) }} as facts
cross join {{ ref('int_financial_year') }} as financial_year
