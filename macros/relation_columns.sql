{#-
    The quoted column names of a relation as the database has them now, in their order;
    empty while dbt only parses (and for a relation that does not exist yet).
-#}
{% macro relation_columns(relation) -%}
    {%- set names = [] -%}
    {%- if execute -%}
        {%- for column in adapter.get_columns_in_relation(relation) -%}
            {%- do names.append(adapter.quote(column.name)) -%}
        {%- endfor -%}
    {%- endif -%}
    {{ return(names) }}
{%- endmacro %}
