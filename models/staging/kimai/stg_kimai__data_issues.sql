-- One row per (table, row, column, rule): each value the sync read under a data rule
-- because the replica could not hold it as it is in Kimai (see docs/models.md, "Bad data
-- in Kimai"). The sync records them in each replica row's data_issues column, one line
-- per issue: `rule|column|raw`.

{%- set tables = [
    ('customers', 'replica_kimai_customers', ['id']),
    ('projects', 'replica_kimai_projects', ['id']),
    ('activities', 'replica_kimai_activities', ['id']),
    ('users', 'replica_kimai_users', ['id']),
    ('tags', 'replica_kimai_tags', ['id']),
    ('timesheets', 'replica_kimai_timesheets', ['id']),
    ('timesheet_tags', 'replica_kimai_timesheet_tags', ['timesheet_id', 'tag_id']),
    ('teams', 'replica_kimai_teams', ['id']),
    ('users_teams', 'replica_kimai_users_teams', ['id']),
    ('user_preferences', 'replica_kimai_user_preferences', ['id']),
    ('configuration', 'replica_kimai_configuration', ['id']),
] %}

with

entries as (

    {% for name, relation, key in tables %}
        select
            '{{ name }}' as table_name,
            {% for k in key -%}
                cast({{ k }} as {{ dbt.type_string() }}){% if not loop.last %} || ',' || {% endif %}
            {%- endfor %} as row_key,
            unnest(string_to_array(data_issues, chr(10))) as entry,
            synced_at
        from {{ source('kimai', relation) }}
        where data_issues is not null
        {% if not loop.last %}union all{% endif %}
    {% endfor %}

),

split as (

    select
        table_name,
        row_key,
        {{ dbt.split_part('entry', "'|'", 2) }} as column_name,
        {{ dbt.split_part('entry', "'|'", 1) }} as rule,
        nullif({{ dbt.split_part('entry', "'|'", 3) }}, '') as raw_value,
        -- the sync read this version of the row (and its issue) then
        synced_at as first_seen_at
    from entries

)

select * from split
