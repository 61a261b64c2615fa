{#-
    With timesheet_facts_materialization = table_incremental: the materialized table holds
    exactly the rows int_timesheet_facts computes now, no more, no fewer, every column
    equal. Fails with one row per timesheet id that is missing, extra or different.

    var timesheet_facts_check (environment variable ATLAS_TIMESHEET_FACTS_CHECK):
      * full: every row of the view is computed, hashed from its column values and matched
        by timesheet_id with the table's row hashed the same way (the table's bookkeeping
        columns are not trusted). Costs a full evaluation of the view (about 10 s at 1M
        timesheets on PostgreSQL, 2 cores).
      * sample: every row's key and synced_at (the table holds exactly the replica's
        timesheets, each as last synced: compared per range of ids, row by row only in the
        ranges that differ), and every column of the rows the last build wrote plus
        1/timesheet_facts_check_sample_every of all ids (a slice picked by the build's log
        position, so successive builds check different slices), computed by the view
        restricted to those ids. About 2 s at 1M.
      * auto (default): full up to timesheet_facts_full_check_max_rows timesheets, sample
        above.
-#}
{{
    config(
        enabled=(var('timesheet_facts_materialization', 'view') == 'table_incremental'),
        tags=['set_level'],
    )
}}

-- what the sample check reads:
-- depends_on: {{ ref('stg_kimai__timesheets') }}
-- depends_on: {{ ref('int_timesheet_facts') }}

{%- set mode = var('timesheet_facts_check', 'auto') | trim -%}
{%- if mode not in ('auto', 'full', 'sample') -%}
    {{ exceptions.raise_compiler_error(
        "var timesheet_facts_check must be 'auto', 'full' or 'sample', got '" ~ mode ~ "'"
    ) }}
{%- endif -%}

{%- set facts = ref('int_timesheet_facts_materialized') -%}
{%- set columns = relation_columns(ref('int_timesheet_facts')) -%}
{%- set full = (mode == 'full') -%}
{%- if execute -%}
    {%- if mode == 'auto' -%}
        {%- set counted = run_query('select count(*) from ' ~ ref('stg_kimai__timesheets')) -%}
        {%- set full = (counted.columns[0].values()[0] | int)
            <= (var('timesheet_facts_full_check_max_rows', 200000) | int) -%}
    {%- endif -%}
{%- endif -%}
{%- set column_list = columns | join(', ') if columns else 'timesheet_id' %}

{%- set every = var('timesheet_facts_check_sample_every', 32) | int -%}
{%- set position = "(select max(change_log_position) from " ~ facts ~ ")" -%}
{%- set bucket = "(timesheet_id - timesheet_id % 64)" -%}
{%- set sampled = none if full else 'select timesheet_id from sample_ids' %}

with

{% if not full -%}

---------- sample: every row's key, the replica's timesheet ids each with its synced_at

replica_ranges as (

    select
        {{ bucket }} as bucket,
        count(*) as row_count,
        bit_xor({{ hash_values(['timesheet_id', 'synced_at']) }}) as row_hash
    from {{ ref('stg_kimai__timesheets') }}
    group by 1

),

table_ranges as (

    select
        {{ bucket }} as bucket,
        count(*) as row_count,
        bit_xor({{ hash_values(['timesheet_id', 'synced_at']) }}) as row_hash
    from {{ facts }}
    group by 1

),

differing_ranges as (

    select coalesce(replica_ranges.bucket, table_ranges.bucket) as bucket
    from replica_ranges
    full outer join table_ranges
        on replica_ranges.bucket = table_ranges.bucket
    where replica_ranges.bucket is null
        or table_ranges.bucket is null
        or replica_ranges.row_count <> table_ranges.row_count
        or replica_ranges.row_hash <> table_ranges.row_hash

),

key_problems as (

    select
        coalesce(replica.timesheet_id, kept.timesheet_id) as timesheet_id,
        case
            when kept.timesheet_id is null then 'missing from the table'
            when replica.timesheet_id is null then 'deleted timesheet still in the table'
            else 'synced_at differs (a sync not applied)'
        end as problem
    from (
        select timesheet_id, synced_at from {{ ref('stg_kimai__timesheets') }}
        where {{ bucket }} in (select bucket from differing_ranges)
    ) as replica
    full outer join (
        select timesheet_id, synced_at from {{ facts }}
        where {{ bucket }} in (select bucket from differing_ranges)
    ) as kept
        on replica.timesheet_id = kept.timesheet_id
    where replica.timesheet_id is null
        or kept.timesheet_id is null
        or replica.synced_at <> kept.synced_at
        or (replica.synced_at is null) <> (kept.synced_at is null)

),

---------- sample: every column of the rows the last build wrote, and 1/{{ every }} of the ids

sample_ids as (

    select timesheet_id
    from {{ facts }}
    where change_log_position = {{ position }}
        or timesheet_id % {{ every }} = {{ position }} % {{ every }}

),

{% endif -%}

---------- every column, hashed from the values on both sides (bookkeeping columns ignored)

expected as (

    select timesheet_id, {{ row_hash('computed') }} as row_hash
    from (
        select {{ column_list }}
        from {{ ref('int_timesheet_facts') }}
        {%- if not full %}
        where {{ in_subquery('timesheet_id', sampled) }}
        {%- endif %}
    ) as computed

),

stored as (

    select timesheet_id, {{ row_hash('kept') }} as row_hash
    from (
        select {{ column_list }} from {{ facts }}
        {%- if not full %}
        where {{ in_subquery('timesheet_id', sampled) }}
        {%- endif %}
    ) as kept

),

value_problems as (

    select
        coalesce(expected.timesheet_id, stored.timesheet_id) as timesheet_id,
        case
            when stored.timesheet_id is null then 'missing from the table'
            when expected.timesheet_id is null then 'deleted timesheet still in the table'
            else 'values differ'
        end as problem
    from expected
    full outer join stored
        on expected.timesheet_id = stored.timesheet_id
    where expected.timesheet_id is null
        or stored.timesheet_id is null
        or expected.row_hash <> stored.row_hash

)

select timesheet_id, problem from value_problems
{%- if not full %}
where timesheet_id not in (select timesheet_id from key_problems)
union all
select timesheet_id, problem from key_problems
{%- endif %}
