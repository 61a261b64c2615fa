{#-
    on-run-end hook: let ATLAS_BI_ROLE read what ATLAS_BI_ROLE_SCOPE allows, and nothing else.

    Scope `replica` (the default): USAGE on the replica schema (ATLAS_REPLICA_SCHEMA) and the
    analytics schema (ATLAS_ANALYTICS_SCHEMA), and SELECT on every `replica_kimai_*` table of
    the replica schema. dlt's bookkeeping (`_dlt_*`), the sync's own state tables and the
    internal (staging/intermediate) schema are never granted: every privilege the role holds
    on any other relation of the replica schema is revoked, so "replica_kimai_* only" holds
    even after a hand-made grant.

    Scope `marts`: USAGE on the analytics schema only. Every privilege on the replica schema
    and on each of its relations is revoked, so a role switched from `replica` loses the
    replica tables (users' e-mail addresses and roles among them) at the next build. The
    views still answer: PostgreSQL checks the tables beneath a view against the view's
    owner (the build's role), not against the reader.

    In both scopes the vw_* views get SELECT through the `grants` config of the marts folder
    (dbt_project.yml), so a new mart needs nothing of its own. Nothing happens when
    ATLAS_BI_ROLE is unset, when the run was not a build/run, or on adapters without grants
    (DuckDB).
-#}
{% macro grant_bi_role_access() -%}
    {{ return(adapter.dispatch('grant_bi_role_access', 'kimai_atlas')()) }}
{%- endmacro %}

{% macro default__grant_bi_role_access() -%}
    select 1
{%- endmacro %}

{% macro postgres__grant_bi_role_access() -%}
    {%- set role = env_var('ATLAS_BI_ROLE', '') | trim -%}
    {%- if not execute or not role or flags.WHICH not in ('build', 'run') -%}
        select 1
    {%- else -%}
        {%- set scope = env_var('ATLAS_BI_ROLE_SCOPE', 'replica') | trim or 'replica' -%}
        {%- if scope not in ('replica', 'marts') -%}
            {%- do exceptions.raise_compiler_error(
                "ATLAS_BI_ROLE_SCOPE must be replica or marts, got '" ~ scope ~ "'") -%}
        {%- endif -%}
        {%- set replica_schema = env_var('ATLAS_REPLICA_SCHEMA', 'kimai_replica') | trim -%}
        {%- set analytics_schema = target.schema | trim -%}
        {%- set tables_sql -%}
            select c.relname, c.relname like 'replica\_kimai\_%' as is_replica
            from pg_catalog.pg_class as c
            join pg_catalog.pg_namespace as n on n.oid = c.relnamespace
            where n.nspname = '{{ replica_schema }}'
              and c.relkind in ('r', 'p', 'v', 'm', 'f')
            order by 1
        {%- endset -%}
        {%- set tables = run_query(tables_sql) -%}
        {%- set statements = [] -%}
        {%- set schemas_sql -%}
            select nspname from pg_catalog.pg_namespace
            where nspname in ('{{ replica_schema }}', '{{ analytics_schema }}')
            order by 1
        {%- endset -%}
        {%- for row in run_query(schemas_sql).rows -%}
            {%- if scope == 'marts' and row[0] == replica_schema -%}
                {%- do statements.append('revoke all on schema ' ~ adapter.quote(row[0]) ~ ' from ' ~ role) -%}
            {%- else -%}
                {%- do statements.append('grant usage on schema ' ~ adapter.quote(row[0]) ~ ' to ' ~ role) -%}
            {%- endif -%}
        {%- endfor -%}
        {%- for row in tables.rows -%}
            {%- set relation = adapter.quote(replica_schema) ~ '.' ~ adapter.quote(row[0]) -%}
            {%- if row[1] and scope == 'replica' -%}
                {%- do statements.append('grant select on ' ~ relation ~ ' to ' ~ role) -%}
            {%- else -%}
                {%- do statements.append('revoke all on ' ~ relation ~ ' from ' ~ role) -%}
            {%- endif -%}
        {%- endfor -%}
        {{ statements | join(';\n') if statements else 'select 1' }}
    {%- endif -%}
{%- endmacro %}
