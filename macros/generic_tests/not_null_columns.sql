{#-
    Fails once per column of `columns` that holds a NULL in `model`, with the number of
    such rows: the NOT NULL checks of one model in one scan (a view over a million
    timesheets is evaluated once, not once per column).
-#}
{% test not_null_columns(model, columns) %}
    with

    null_counts as (

        select
            {%- for column in columns %}
            sum(case when {{ column }} is null then 1 else 0 end) as nulls_{{ loop.index }}
            {%- if not loop.last %},{% endif %}
            {%- endfor %}
        from {{ model }}

    )

    {% for column in columns %}
    select '{{ column }}' as column_name, nulls_{{ loop.index }} as null_rows
    from null_counts
    where nulls_{{ loop.index }} > 0
    {% if not loop.last %}union all{% endif %}
    {% endfor %}
{% endtest %}
