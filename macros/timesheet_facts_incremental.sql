{#-
    The change-driven refresh of int_timesheet_facts_incremental (docs/models.md,
    "Materialization of vw_timesheet_facts").

    The model's transaction (one snapshot: REPEATABLE READ on PostgreSQL) runs
      1. timesheet_facts_incremental_prepare() (pre-hook): computes the new state and the
         ids of the timesheets whose fact row may differ from the stored one (the
         candidates) into temporary tables;
      2. the model: the fact rows of the candidates (timesheet_facts_sql restricted to
         them), delete+insert on timesheet_id;
      3. timesheet_facts_incremental_finish() (post-hook): deletes the candidates that no
         longer exist in the replica and replaces the stored state.

    The state table (<model>__state, next to the table) holds, as of the last build:
      * per dimension row (users, activities, projects, tags): a hash of exactly the columns
        the facts take from it (timesheet_fact_dimensions());
      * per range of timesheet ids (timesheet_facts_bucket_size() ids): number and xor-hash
        of the replica's (id, synced_at), and the largest synced_at (the watermark);
      * the same per range for the Kimai tag pairs (timesheet_id, tag_id) and their
        synced_at;
      * the build number and the state's version.
    The table itself keeps, per row, the hash of the timesheet's tag set (tag_set_hash) and
    the build that wrote the row (refreshed_build).
-#}

{#- Version of the stored state; another version (or bucket size) rebuilds everything. -#}
{% macro timesheet_facts_state_version() -%}
    {{ return(1) }}
{%- endmacro %}


{#- Timesheet ids per range of the stored state. -#}
{% macro timesheet_facts_bucket_size() -%}
    {{ return(64) }}
{%- endmacro %}


{#- The state table of the incremental facts table `facts_relation`. -#}
{% macro timesheet_facts_state_relation(facts_relation) -%}
    {{ return(facts_relation.incorporate(path={'identifier': facts_relation.identifier ~ '__state'})) }}
{%- endmacro %}


{#- Names of the temporary tables of one build (session-local). -#}
{% macro timesheet_facts_temp_tables() -%}
    {{ return({
        'new_state': 'timesheet_facts__new_state',
        'changes': 'timesheet_facts__changes',
        'changed_keys': 'timesheet_facts__changed_keys',
        'candidates': 'timesheet_facts__candidates',
    }) }}
{%- endmacro %}


{#- The bucket (first id of its range) of a timesheet id expression. -#}
{% macro timesheet_facts_bucket(expression) -%}
    ({{ expression }} - {{ expression }} % {{ timesheet_facts_bucket_size() }})
{%- endmacro %}


{#-
    The timesheet ids of the ranges listed in changed_keys under `entity` (a query; every
    id of each range, whether or not a row has it), to filter rows with in_subquery: an
    index scan per id on PostgreSQL, whatever the number of ranges.
-#}
{% macro timesheet_facts_ids_in_changed_ranges(entity) -%}
    {%- set temp = timesheet_facts_temp_tables() -%}
    select cast(changed.entity_id + offsets.generated_number - 1 as {{ dbt.type_bigint() }})
    from {{ temp.changed_keys }} as changed
    cross join ({{ dbt.generate_series(timesheet_facts_bucket_size()) }}) as offsets
    where changed.entity = '{{ entity }}'
{%- endmacro %}


{#- ANALYZE a temporary table where the adapter needs it (analyze_relation). -#}
{% macro timesheet_facts_analyze(name) -%}
    {%- set statement = analyze_relation(name) | trim -%}
    {%- if statement -%}
        {% do run_query(statement) %}
    {%- endif -%}
{%- endmacro %}


{% macro timesheet_facts_incremental_prepare() -%}
    {%- if not execute -%}
        {{ return('') }}
    {%- endif -%}
    {%- set facts = this -%}
    {%- set state = timesheet_facts_state_relation(this) -%}
    {%- set temp = timesheet_facts_temp_tables() -%}
    {%- set timesheets = ref('stg_kimai__timesheets') -%}
    {%- set pairs = ref('stg_kimai__timesheet_tags') -%}
    {%- set dimensions = timesheet_fact_dimensions() -%}
    {%- set version = timesheet_facts_state_version() -%}
    {%- set size = timesheet_facts_bucket_size() -%}
    {#- a fingerprint of the facts SQL: a changed column set or a changed rule makes every
        stored row stale, so the table is then recomputed whole (never a column left NULL
        on old rows, never old values beside new ones) -#}
    {%- set sql_hash = local_md5(timesheet_facts_sql() | string)[:15] | int(base=16) -%}

    {%- for name in temp.values() %}
        {% do run_query('drop table if exists ' ~ name) %}
    {%- endfor %}

    {% do run_query(
        'create table if not exists ' ~ state ~ ' ('
        ~ ' entity varchar(32) not null, entity_id bigint not null, state_count bigint,'
        ~ ' state_hash bigint, watermark timestamp with time zone)'
    ) %}

    {#- the stored state is usable when the table is kept incrementally and the state has
        this version, bucket size and facts SQL -#}
    {%- set usable = false -%}
    {%- if is_incremental() -%}
        {%- set found = run_query(
            "select count(*) from " ~ state ~ " where (entity = 'version'"
            ~ " and state_count = " ~ version ~ " and state_hash = " ~ size ~ ")"
            ~ " or (entity = 'sql' and state_hash = " ~ sql_hash ~ ")"
        ) -%}
        {%- set usable = (found.columns[0].values()[0] | int) == 2 -%}
    {%- endif -%}

    {#- rows synced after the last build: their synced_at is newer than the range's
        watermark; every other row is "old" (its synced_at at most the watermark) -#}
    {%- set timesheets_old -%}
        coalesce(synced_at <= (select max(watermark) from {{ state }} where entity = 'timesheet_bucket'), false)
    {%- endset -%}
    {%- set pairs_old -%}
        coalesce(synced_at <= (select max(watermark) from {{ state }} where entity = 'tag_pair_bucket'), false)
    {%- endset -%}

    {#- 1. the new state, as of this build's snapshot; old_count/old_hash cover the rows
        that were already there at the last build -#}
    {%- set new_state_sql -%}
        create temporary table {{ temp.new_state }} as
        with

        timesheet_rows as (
            select
                {{ timesheet_facts_bucket('timesheet_id') }} as bucket,
                synced_at,
                {{ hash_values(['timesheet_id', 'synced_at']) }} as row_hash,
                {{ timesheets_old }} as is_old
            from {{ timesheets }}
            -- offset 0: evaluated once per row, not once per aggregate that uses it
            offset 0
        ),

        pair_rows as (
            select
                {{ timesheet_facts_bucket('timesheet_id') }} as bucket,
                synced_at,
                {{ hash_values(['timesheet_id', 'tag_id']) }} as row_hash,
                {{ pairs_old }} as is_old
            from {{ pairs }}
            offset 0
        )

        select
            'timesheet_bucket' as entity,
            bucket as entity_id,
            count(*) as state_count,
            bit_xor(row_hash) as state_hash,
            max(synced_at) as watermark,
            count(case when is_old then 1 end) as old_count,
            bit_xor(case when is_old then row_hash end) as old_hash
        from timesheet_rows
        group by bucket

        union all

        select 'tag_pair_bucket', bucket, count(*), bit_xor(row_hash), max(synced_at),
            count(case when is_old then 1 end), bit_xor(case when is_old then row_hash end)
        from pair_rows
        group by bucket

        {%- for name, dimension in dimensions.items() %}

        union all

        select '{{ name }}', dimension.{{ dimension['key'] }}, 1,
            {{ hash_values(dimension['columns']) }}, null, null, null
        from ({{ timesheet_fact_dimension_sql(name) }}) as dimension
        {%- endfor %}

        union all

        select 'build', 0,
            coalesce((select max(state_count) from {{ state }} where entity = 'build'), 0) + 1,
            null, null, null, null

        union all

        select 'version', 0, {{ version }}, {{ size }}, null, null, null

        union all

        select 'sql', 0, null, {{ sql_hash }}, null, null, null
    {%- endset -%}
    {% do run_query(new_state_sql) %}
    {% do timesheet_facts_analyze(temp.new_state) %}

    {%- if not usable -%}
        {#- first build, --full-refresh (the model computes every row), the state is
            missing or the facts SQL changed: every timesheet is a candidate, from an empty
            table (whose columns the model then syncs to the new ones) -#}
        {%- if is_incremental() %}
            {% do log("int_timesheet_facts_incremental: no usable state in " ~ state ~ ", recomputing every row", info=true) %}
            {% do run_query('truncate table ' ~ facts) %}
        {%- endif %}
        {% do run_query(
            'create temporary table ' ~ temp.candidates ~ ' as select timesheet_id from ' ~ timesheets
            ~ ('' if is_incremental() else ' where 1 = 0')
        ) %}
        {% do timesheet_facts_analyze(temp.candidates) %}
        {{ return('') }}
    {%- endif -%}

    {#- 2. timesheets synced since the last build -#}
    {%- set changes_sql -%}
        create temporary table {{ temp.changes }} as
        select timesheet_id, 'timesheet' as reason
        from {{ timesheets }}
        where not {{ timesheets_old }}
    {%- endset -%}
    {% do run_query(changes_sql) %}
    {% do timesheet_facts_analyze(temp.changes) %}

    {#- 3. what changed without a newer synced_at: dimension rows (new, changed or gone),
        ranges of timesheet ids whose old rows differ from the stored rows minus those
        re-synced (a deleted timesheet, or a change that kept an old synced_at), ranges of
        tag pairs whose old pairs differ from the stored ones (a deleted pair) -#}
    {%- set changed_keys_sql -%}
        create temporary table {{ temp.changed_keys }} as

        select
            coalesce(new_state.entity, stored.entity) as entity,
            coalesce(new_state.entity_id, stored.entity_id) as entity_id
        from (
            select entity, entity_id, state_hash from {{ temp.new_state }}
            where entity in ('{{ dimensions.keys() | join("', '") }}')
        ) as new_state
        full outer join (
            select entity, entity_id, state_hash from {{ state }}
            where entity in ('{{ dimensions.keys() | join("', '") }}')
        ) as stored
            on new_state.entity = stored.entity
            and new_state.entity_id = stored.entity_id
        where new_state.entity is null
            or stored.entity is null
            or new_state.state_hash <> stored.state_hash

        union all

        select 'timesheet_bucket', coalesce(expected.bucket, new_state.entity_id)
        from (
            select bucket, sum(row_count) as row_count, bit_xor(row_hash) as row_hash
            from (
                select entity_id as bucket, state_count as row_count, state_hash as row_hash
                from {{ state }}
                where entity = 'timesheet_bucket'

                union all

                -- the stored version of each re-synced timesheet is no longer "old"
                select
                    {{ timesheet_facts_bucket('stored.timesheet_id') }},
                    -1,
                    {{ hash_values(['stored.timesheet_id', 'stored.synced_at']) }}
                from {{ facts }} as stored
                inner join {{ temp.changes }} as changes
                    on stored.timesheet_id = changes.timesheet_id
            ) as expected_rows
            group by bucket
        ) as expected
        full outer join (
            select entity_id, old_count, old_hash from {{ temp.new_state }}
            where entity = 'timesheet_bucket'
        ) as new_state
            on expected.bucket = new_state.entity_id
        where coalesce(expected.row_count, 0) <> coalesce(new_state.old_count, 0)
            or coalesce(expected.row_hash, 0) <> coalesce(new_state.old_hash, 0)

        union all

        select 'tag_pair_bucket', coalesce(stored.entity_id, new_state.entity_id)
        from (
            select entity_id, state_count, state_hash from {{ state }}
            where entity = 'tag_pair_bucket'
        ) as stored
        full outer join (
            select entity_id, old_count, old_hash from {{ temp.new_state }}
            where entity = 'tag_pair_bucket'
        ) as new_state
            on stored.entity_id = new_state.entity_id
        where coalesce(stored.state_count, 0) <> coalesce(new_state.old_count, 0)
            or coalesce(stored.state_hash, 0) <> coalesce(new_state.old_hash, 0)
    {%- endset -%}
    {% do run_query(changed_keys_sql) %}
    {% do timesheet_facts_analyze(temp.changed_keys) %}

    {%- set changed = {} -%}
    {%- set counted = run_query(
        'select entity, count(*) from ' ~ temp.changed_keys ~ ' group by entity'
    ) -%}
    {%- for row in counted.rows -%}
        {%- do changed.update({row[0]: row[1] | int}) -%}
    {%- endfor -%}
    {% do log("int_timesheet_facts_incremental: changed dimension rows and id ranges: " ~ changed, info=true) %}

    {#- 4. the candidates: timesheets whose fact row may differ from the stored one -#}
    {%- set pairs_sql -%}
        insert into {{ temp.changes }} (timesheet_id, reason)
        select timesheet_id, 'tag pair'
        from {{ pairs }}
        where not {{ pairs_old }}
    {%- endset -%}
    {% do run_query(pairs_sql) %}

    {%- set referencing = [] -%}
    {%- for name, column in [('users', 'user_id'), ('activities', 'activity_id'), ('projects', 'project_id')] -%}
        {%- if changed.get(name) -%}
            {%- do referencing.append(
                'stored.' ~ column ~ ' in (select entity_id from ' ~ temp.changed_keys
                ~ " where entity = '" ~ name ~ "')"
            ) -%}
        {%- endif -%}
    {%- endfor -%}
    {%- if referencing -%}
        {%- set dimension_sql -%}
            insert into {{ temp.changes }} (timesheet_id, reason)
            select stored.timesheet_id, 'dimension'
            from {{ facts }} as stored
            where {{ referencing | join(' or ') }}
        {%- endset -%}
        {% do run_query(dimension_sql) %}
    {%- endif -%}

    {%- if changed.get('tags') -%}
        {%- set tags_sql -%}
            insert into {{ temp.changes }} (timesheet_id, reason)
            select timesheet_id, 'tag'
            from {{ pairs }}
            where tag_id in (select entity_id from {{ temp.changed_keys }} where entity = 'tags')
        {%- endset -%}
        {% do run_query(tags_sql) %}
    {%- endif -%}

    {%- if changed.get('timesheet_bucket') -%}
        {#- row by row in the differing ranges: new, deleted or differently synced -#}
        {%- set timesheet_ranges_sql -%}
            insert into {{ temp.changes }} (timesheet_id, reason)
            select coalesce(replica.timesheet_id, stored.timesheet_id), 'timesheet range'
            from (
                select timesheet_id, synced_at
                from {{ timesheets }}
                where {{ in_subquery('timesheet_id', timesheet_facts_ids_in_changed_ranges('timesheet_bucket')) }}
            ) as replica
            full outer join (
                select timesheet_id, synced_at
                from {{ facts }}
                where {{ in_subquery('timesheet_id', timesheet_facts_ids_in_changed_ranges('timesheet_bucket')) }}
            ) as stored
                on replica.timesheet_id = stored.timesheet_id
            where replica.timesheet_id is null
                or stored.timesheet_id is null
                or replica.synced_at <> stored.synced_at
                or replica.synced_at is null
                or stored.synced_at is null
        {%- endset -%}
        {% do run_query(timesheet_ranges_sql) %}
    {%- endif -%}

    {%- if changed.get('tag_pair_bucket') -%}
        {#- timesheet by timesheet in the differing ranges: tag set now vs stored -#}
        {%- set pair_ranges_sql -%}
            insert into {{ temp.changes }} (timesheet_id, reason)
            select coalesce(current_sets.timesheet_id, stored.timesheet_id), 'tag pair range'
            from (
                select timesheet_id, bit_xor({{ hash_values(['tag_id']) }}) as tag_set_hash
                from {{ pairs }}
                where {{ in_subquery('timesheet_id', timesheet_facts_ids_in_changed_ranges('tag_pair_bucket')) }}
                group by timesheet_id
            ) as current_sets
            full outer join (
                select timesheet_id, tag_set_hash
                from {{ facts }}
                where {{ in_subquery('timesheet_id', timesheet_facts_ids_in_changed_ranges('tag_pair_bucket')) }}
            ) as stored
                on current_sets.timesheet_id = stored.timesheet_id
            where coalesce(current_sets.tag_set_hash, 0) <> coalesce(stored.tag_set_hash, 0)
        {%- endset -%}
        {% do run_query(pair_ranges_sql) %}
    {%- endif -%}

    {%- set reasons = run_query(
        'select reason, count(*) from ' ~ temp.changes ~ ' group by reason order by reason'
    ) -%}
    {% do log(
        "int_timesheet_facts_incremental: candidates by reason: "
        ~ (reasons.rows | map('join', ' ') | join(', ') or 'none'),
        info=true
    ) %}
    {% do run_query(
        'create temporary table ' ~ temp.candidates ~ ' as select distinct timesheet_id from ' ~ temp.changes
    ) %}
    {% do timesheet_facts_analyze(temp.candidates) %}
    {{ return('') }}
{%- endmacro %}


{% macro timesheet_facts_incremental_finish() -%}
    {%- if not execute -%}
        {{ return('') }}
    {%- endif -%}
    {%- set state = timesheet_facts_state_relation(this) -%}
    {%- set temp = timesheet_facts_temp_tables() -%}
    {#- candidates without a fact row any more: their timesheet is gone from the replica -#}
    {%- set timesheets = ref('stg_kimai__timesheets') -%}
    {%- set candidates = 'select timesheet_id from ' ~ temp.candidates -%}
    {%- set vanished_sql -%}
        delete from {{ this }}
        where {{ in_subquery('timesheet_id', candidates ~ ' except select timesheet_id from '
            ~ timesheets ~ ' where ' ~ in_subquery('timesheet_id', candidates)) }}
    {%- endset -%}
    {% do run_query(vanished_sql) %}
    {#- truncate, not delete: the state is rewritten on every build and must not bloat -#}
    {% do run_query('truncate table ' ~ state) %}
    {% do run_query(
        'insert into ' ~ state ~ ' (entity, entity_id, state_count, state_hash, watermark)'
        ~ ' select entity, entity_id, state_count, state_hash, watermark from ' ~ temp.new_state
    ) %}
    {%- for name in temp.values() %}
        {% do run_query('drop table if exists ' ~ name) %}
    {%- endfor %}
    {{ return('') }}
{%- endmacro %}
