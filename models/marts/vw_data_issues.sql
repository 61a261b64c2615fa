-- One row per (table, row, column, rule): the values of Kimai that no report should take
-- as they are (docs/models.md, "Bad data in Kimai"). Empty when Kimai's data is clean.

select
    table_name,
    row_key,
    column_name,
    rule,
    raw_value,
    first_seen_at
from {{ ref('int_data_issues') }}
