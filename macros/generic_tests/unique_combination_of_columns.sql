{#- Fails once per combination of `combination_of_columns` that occurs more than once (rows with a NULL in any of them are ignored, as SQL unique constraints do). -#}
{% test unique_combination_of_columns(model, combination_of_columns) %}
    select {{ combination_of_columns | join(', ') }}, count(*) as occurrences
    from {{ model }}
    where {% for column in combination_of_columns %}{{ column }} is not null{% if not loop.last %} and {% endif %}{% endfor %}
    group by {{ combination_of_columns | join(', ') }}
    having count(*) > 1
{% endtest %}
