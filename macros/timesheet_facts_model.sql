{#-
    The model the BI views read the fact rows from: int_timesheet_facts (computed on read,
    var timesheet_facts_materialization = view, the default) or
    int_timesheet_facts_materialized (table_incremental). Any other value is an error.
-#}
{% macro timesheet_facts_model() -%}
    {%- set mode = var('timesheet_facts_materialization', 'view') -%}
    {%- if mode not in ('view', 'table_incremental') -%}
        {{ exceptions.raise_compiler_error(
            "var timesheet_facts_materialization must be 'view' or 'table_incremental', got '" ~ mode ~ "'"
        ) }}
    {%- endif -%}
    {{ return('int_timesheet_facts_materialized' if mode == 'table_incremental' else 'int_timesheet_facts') }}
{%- endmacro %}

{#-
    The columns the timesheet facts take from their project (int_projects_joined_to_overlays
    with Atlas's overlays), as fact column → expression over that model's columns, `{p}`
    standing for its alias. Listed once: int_timesheet_facts selects them, and the
    incremental model int_timesheet_facts_materialized compares them with its stored
    rows to find the projects whose facts changed, since an overlay change (status, taxonomy
    tags, customer) writes no change-log row.
-#}
{% macro timesheet_facts_project_columns() -%}
    {{ return({
        'project_name': '{p}.project_name',
        'customer_id': '{p}.customer_id',
        'customer_name': '{p}.customer_name',
        'currency': '{p}.currency',
        'project_is_billable': '{p}.is_billable',
        'project_status_id': '{p}.status_id',
        'project_status': '{p}.status_name',
        'project_tags': "coalesce({p}.project_tags, '')",
    }) }}
{%- endmacro %}

{#-
    The facts' tag columns as fact column → expression over int_timesheet_tags_aggregated,
    `{t}` standing for its alias. Listed once: int_timesheet_facts selects them, and the
    incremental model's refresh reads them from that model filtered on its key (a filter on
    the facts view does not reach the aggregate behind its join: all tag pairs were
    aggregated for a refresh of a few rows).
-#}
{% macro timesheet_facts_tag_columns() -%}
    {{ return({
        'timesheet_tags': "coalesce({t}.timesheet_tags, '')",
        'timesheet_tags_array': 'coalesce({t}.timesheet_tags_array, ' ~ empty_tag_array() ~ ')',
    }) }}
{%- endmacro %}
