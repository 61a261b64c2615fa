-- One row per replicated table: the number of rows the replica holds right now.

{% set tables = [
    ('customers', 'stg_kimai__customers'),
    ('projects', 'stg_kimai__projects'),
    ('activities', 'stg_kimai__activities'),
    ('users', 'stg_kimai__users'),
    ('tags', 'stg_kimai__tags'),
    ('timesheets', 'stg_kimai__timesheets'),
    ('timesheet_tags', 'stg_kimai__timesheet_tags'),
    ('teams', 'stg_kimai__teams'),
    ('users_teams', 'stg_kimai__team_memberships'),
    ('user_preferences', 'stg_kimai__user_preferences'),
    ('configuration', 'stg_kimai__system_settings'),
] %}

{% for name, model in tables %}
    select
        '{{ name }}' as table_name,
        cast(count(*) as {{ dbt.type_bigint() }}) as replica_rows
    from {{ ref(model) }}
    {% if not loop.last %}union all{% endif %}
{% endfor %}
