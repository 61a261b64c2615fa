{#-
    With timesheet_facts_materialization = table_incremental: the incremental table holds
    exactly the rows int_timesheet_facts computes now, no more, no fewer, every column
    equal. Each side's rows are hashed from their column values (the stored row_hash is not
    trusted) and matched by timesheet_id; any row missing on one side or differing fails.
-#}
{{ config(enabled=(var('timesheet_facts_materialization', 'view') == 'table_incremental')) }}

{%- set columns = [] -%}
{%- if execute -%}
    {%- for column in adapter.get_columns_in_relation(ref('int_timesheet_facts')) -%}
        {%- do columns.append(adapter.quote(column.name)) -%}
    {%- endfor -%}
{%- endif -%}
{%- set column_list = columns | join(', ') if columns else 'timesheet_id' %}

with

expected as (

    select timesheet_id, {{ row_hash('computed') }} as row_hash
    from (select {{ column_list }} from {{ ref('int_timesheet_facts') }}) as computed

),

stored as (

    select timesheet_id, {{ row_hash('kept') }} as row_hash
    from (select {{ column_list }} from {{ ref('int_timesheet_facts_incremental') }}) as kept

)

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
