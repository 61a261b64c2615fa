with

source as (

    select * from {{ source('sync', 'sync_runs') }}

),

renamed as (

    select
        run_id,
        command,
        trigger as run_trigger,
        started_by,
        host,
        pid,
        started_at,
        finished_at,
        status,
        exit_code,
        error,
        build_status,
        build_failures,
        published_at

    from source

)

select * from renamed
