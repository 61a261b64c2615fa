-- One row per Kimai user in at least one team: the names of the user's teams, joined by
-- ', ' in name order (case-insensitive, then exact), and how many there are.

with

memberships as (

    select * from {{ ref('stg_kimai__team_memberships') }}

),

teams as (

    select * from {{ ref('stg_kimai__teams') }}

)

select
    memberships.user_id,
    {{ dbt.listagg(
        'teams.team_name',
        "', '",
        'order by ' ~ sort_key('teams.team_name')
    ) }} as team_names,
    cast(count(*) as {{ dbt.type_bigint() }}) as team_count
from memberships
inner join teams
    on memberships.team_id = teams.team_id
group by memberships.user_id
