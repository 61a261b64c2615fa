-- vw_projects has exactly one row per Kimai project and one per prospective project of
-- Atlas (overrides_projects rows without a Kimai id, shown as -id), nothing else.

-- set_level: a whole-set check; a delta build leaves it to the full audit (docs/models.md)
{{ config(tags=['set_level']) }}

with

expected as (

    select project_id, 'kimai' as origin from {{ ref('stg_kimai__projects') }}
    union all
    select -1 * override_id as project_id, 'atlas' as origin
    from {{ ref('stg_atlas__overrides_projects') }}
    where kimai_project_id is null

),

actual as (

    select project_id, origin from {{ ref('vw_projects') }}

)

select
    coalesce(expected.project_id, actual.project_id) as project_id,
    case when actual.project_id is null then 'missing' else 'unexpected' end as problem

from expected
full outer join actual
    on expected.project_id = actual.project_id
    and expected.origin = actual.origin
where expected.project_id is null or actual.project_id is null
