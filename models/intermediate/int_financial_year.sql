-- One row per Kimai install: the first month and day of Kimai's financial year, from the system
-- setting
-- `company.financial_year` (a `Y-m-d` date whose year Kimai ignores). Without the setting
-- (or with a value Kimai's date picker would not have written) the financial year is the
-- calendar year.

with

setting as (

    select {{ php_date('max(setting_value)') }} as financial_year_date
    from {{ ref('stg_kimai__system_settings') }}
    where setting_name = 'company.financial_year'

)

select
    cast(coalesce(extract(month from financial_year_date), 1) as integer) as start_month,
    cast(coalesce(extract(day from financial_year_date), 1) as integer) as start_day
from setting
