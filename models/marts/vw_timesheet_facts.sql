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
    timesheet_id,
    user_id,
    user_name,
    username,
    project_id,
    project_name,
    activity_id,
    activity_name,
    customer_id,
    customer_name,
    currency,
    started_at,
    ended_at,
    started_at_local,
    ended_at_local,
    timezone,
    date_tz,
    week_start_date,
    month_start_date,
    {{ report_date }} as report_date,
    cast({{ dbt.date_trunc('week', report_date) }} as date) as report_week_start_date,
    cast({{ dbt.date_trunc('month', report_date) }} as date) as report_month_start_date,
    {{ financial_year_start('date_tz', 'financial_year.start_month', 'financial_year.start_day') }}
        as financial_year_start_date,
    duration_seconds,
    duration_hours,
    billable_seconds,
    billable_hours,
    break_seconds,
    is_running,
    is_billable,
    project_is_billable,
    activity_is_billable,
    is_exported,
    revenue,
    internal_cost,
    rate_amount,
    hourly_rate,
    fixed_rate_amount,
    project_status_id,
    project_status,
    project_tags,
    timesheet_tags,
    timesheet_tags_array,
    description,
    category,
    modified_at,
    synced_at

from {{ ref(facts_model) }} as facts
cross join {{ ref('int_financial_year') }} as financial_year
