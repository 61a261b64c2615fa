-- One row per IANA time zone name the database knows (PostgreSQL's pg_timezone_names,
-- DuckDB's ICU list): a zone name stored in Kimai is used only when it is one of these,
-- so a stray value reads as NULL instead of failing every query of the view.

select name as zone_name
from {{ known_time_zones_relation() }}
