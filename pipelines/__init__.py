"""Kimai → Atlas DB replica, reconciliation and dbt transform runner."""
