-- One row per run that ran a dbt build, from the run audit, with the two builds BI health
-- is about marked: the one BI reads now (the last published) and the last one that ended.
-- A failed build is never published, so after a failure the two differ: BI keeps the last
-- good build, and the newer one says why it was not published.

with

runs as (

    select * from {{ ref('stg_sync__runs') }}
    where build_status is not null

),

ranked as (

    select
        run_id,
        command,
        started_at,
        coalesce(finished_at, started_at) as ended_at,
        build_status,
        build_failures,
        published_at,
        row_number() over (
            order by case when published_at is null then 1 else 0 end, published_at desc
        ) as published_rank,
        row_number() over (
            order by case when build_status = 'running' then 1 else 0 end, started_at desc
        ) as ended_rank

    from runs

),

final as (

    select
        run_id,
        command,
        started_at,
        ended_at,
        build_status,
        build_failures,
        published_at,
        (published_at is not null and published_rank = 1) as is_served,
        (build_status <> 'running' and ended_rank = 1) as is_last_ended

    from ranked

)

select * from final
