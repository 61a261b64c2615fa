-- One row per (Kimai user, team): team membership, with the team's name and whether the
-- user leads it (a team may have several leads). For "hours per team", join
-- vw_timesheet_facts on user_id: a user in two teams counts in both.

with

memberships as (

    select * from {{ ref('stg_kimai__team_memberships') }}

),

teams as (

    select * from {{ ref('stg_kimai__teams') }}

)

select
    memberships.user_id,
    memberships.team_id,
    teams.team_name,
    memberships.is_teamlead,
    teams.color as team_color,
    memberships.membership_id
from memberships
inner join teams
    on memberships.team_id = teams.team_id
