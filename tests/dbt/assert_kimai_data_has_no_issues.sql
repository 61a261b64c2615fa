{#
    Kimai's own data, not the product's transformations: values Kimai holds that the
    replica keeps under a data rule or that no report should take at face value
    (vw_data_issues). A warning, never a failed build: the views stay right and are
    published, and the warning (with vw_data_issues, `status` and the health page) says
    what to fix in Kimai.
#}
{{ config(severity='warn') }}

select * from {{ ref('vw_data_issues') }}
