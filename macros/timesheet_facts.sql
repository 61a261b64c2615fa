{#-
    The fact rows of vw_timesheet_facts, defined once and used twice:
      * int_timesheet_facts (the view) is `timesheet_facts_sql()`: every timesheet;
      * int_timesheet_facts_incremental computes only the timesheets that changed since its
        last build with `timesheet_facts_sql('select timesheet_id from ...')`: the same SQL,
        with the timesheets and their tag pairs filtered by id *before* the joins and the
        tag aggregation (a filter on the view itself would still aggregate every tag pair:
        PostgreSQL cannot push a join or an IN list into a grouped subquery).

    Every column the facts take from a dimension (user, activity, project, Kimai tag) is
    listed in timesheet_fact_dimensions(): the dimension CTEs select exactly those columns,
    so a fact column read from a dimension but not listed there is an SQL error, and the
    incremental table hashes exactly those columns to find changed dimension rows.
-#}

{% macro timesheet_fact_dimensions() -%}
    {{ return({
        'users': {
            'key': 'user_id',
            'columns': ['user_name', 'username'],
        },
        'activities': {
            'key': 'activity_id',
            'columns': ['activity_name'],
        },
        'projects': {
            'key': 'project_id',
            'columns': [
                'project_name', 'customer_id', 'customer_name', 'currency',
                'status_id', 'status_name', 'project_tags',
            ],
        },
        'tags': {
            'key': 'tag_id',
            'columns': ['tag_name'],
        },
    }) }}
{%- endmacro %}


{#- One dimension as the facts see it: its key and the listed columns, nothing else. -#}
{% macro timesheet_fact_dimension_sql(name) -%}
    {%- set dimension = timesheet_fact_dimensions()[name] -%}
    select {{ dimension['key'] }}, {{ dimension['columns'] | join(', ') }}
    {% if name == 'users' -%}
    from {{ ref('stg_kimai__users') }}
    {%- elif name == 'activities' -%}
    from {{ ref('stg_kimai__activities') }}
    {%- elif name == 'projects' -%}
    from {{ ref('int_projects_joined_to_overlays') }}
    where origin = 'kimai'
    {%- elif name == 'tags' -%}
    from {{ ref('stg_kimai__tags') }}
    {%- else -%}
    {{ exceptions.raise_compiler_error('unknown timesheet fact dimension ' ~ name) }}
    {%- endif %}
{%- endmacro %}


{#-
    One row per timesheet with at least one Kimai tag: the tag names joined by ', ' in name
    order (case-insensitive; Kimai tag names are unique case-insensitively), hidden tags
    included, and their number. `timesheet_tags` is the relation (or parenthesised
    subquery) of (timesheet_id, tag_id) pairs to aggregate.
-#}
{% macro aggregate_timesheet_tags(timesheet_tags) -%}
    select
        timesheet_tags.timesheet_id,
        {{ dbt.listagg('tags.tag_name', "', '", 'order by ' ~ sort_key('tags.tag_name')) }} as timesheet_tags,
        count(*) as timesheet_tag_count

    from {{ timesheet_tags }} as timesheet_tags
    inner join ({{ timesheet_fact_dimension_sql('tags') }}) as tags
        on timesheet_tags.tag_id = tags.tag_id
    group by timesheet_tags.timesheet_id
{%- endmacro %}


{#-
    The fact rows: every timesheet (timesheet_ids none), or only those whose id the SQL
    query `timesheet_ids` returns (one column, the timesheet id).
-#}
{% macro timesheet_facts_sql(timesheet_ids=none) -%}
with

timesheets as (

    select * from {{ ref('int_timesheets_valued') }}
    {%- if timesheet_ids %}
    where {{ in_subquery('timesheet_id', timesheet_ids) }}
    {%- endif %}

),

users as (

    {{ timesheet_fact_dimension_sql('users') }}

),

activities as (

    {{ timesheet_fact_dimension_sql('activities') }}

),

projects as (

    {{ timesheet_fact_dimension_sql('projects') }}

),

timesheet_tags as (

    {%- if timesheet_ids %}
    {{ aggregate_timesheet_tags(
        '(select timesheet_id, tag_id from ' ~ ref('stg_kimai__timesheet_tags')
        ~ ' where ' ~ in_subquery('timesheet_id', timesheet_ids) ~ ')'
    ) }}
    {%- else %}
    select * from {{ ref('int_timesheet_tags_aggregated') }}
    {%- endif %}

),

joined as (

    select
        ---------- keys and names
        timesheets.timesheet_id,
        timesheets.user_id,
        users.user_name,
        users.username,
        timesheets.project_id,
        projects.project_name,
        timesheets.activity_id,
        activities.activity_name,
        projects.customer_id,
        projects.customer_name,
        projects.currency,

        ---------- time
        timesheets.started_at,
        timesheets.ended_at,
        {{ to_local_timestamp('timesheets.started_at', 'timesheets.timezone') }} as started_at_local,
        {{ to_local_timestamp('timesheets.ended_at', 'timesheets.timezone') }} as ended_at_local,
        timesheets.timezone,
        timesheets.date_tz,
        cast({{ dbt.date_trunc('week', 'timesheets.date_tz') }} as date) as week_start_date,
        cast({{ dbt.date_trunc('month', 'timesheets.date_tz') }} as date) as month_start_date,
        timesheets.duration_seconds,
        timesheets.duration_hours,
        timesheets.billable_seconds,
        {{ seconds_to_hours('timesheets.billable_seconds') }} as billable_hours,
        timesheets.break_seconds,

        ---------- flags
        timesheets.is_running,
        timesheets.is_billable,
        timesheets.is_exported,

        ---------- money (the customer's currency)
        timesheets.revenue,
        timesheets.internal_cost,
        timesheets.rate_amount,
        timesheets.hourly_rate,
        timesheets.fixed_rate_amount,

        ---------- project overlay and tags
        projects.status_id as project_status_id,
        projects.status_name as project_status,
        coalesce(projects.project_tags, '') as project_tags,
        coalesce(timesheet_tags.timesheet_tags, '') as timesheet_tags,

        ---------- other Kimai columns
        timesheets.description,
        timesheets.category,
        timesheets.modified_at,
        timesheets.synced_at

    from timesheets
    left join users
        on timesheets.user_id = users.user_id
    left join activities
        on timesheets.activity_id = activities.activity_id
    left join projects
        on timesheets.project_id = projects.project_id
    left join timesheet_tags
        on timesheets.timesheet_id = timesheet_tags.timesheet_id

)

select * from joined
{%- endmacro %}
