"""What one measured run records."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

# -- measurement -----------------------------------------------------------------------------------


@dataclass
class Snapshot:
    user: dict[str, int]
    table_rows_read: int
    mariadbd_cpu: float
    pg_cpu: float
    host: float
    maria_uptime: int
    pg_started: str


@dataclass
class Sample:
    scenario: str
    round: str
    position: int = 0
    wall: float = 0.0
    cpu: float = 0.0
    rss_mib: float = 0.0
    rss_peak_at: float = 0.0
    rc: int = 0
    rows: int = 0
    kimai_rows_examined: int = 0
    kimai_rows_sent: int = 0
    kimai_bytes_sent: int = 0
    kimai_cpu: float = 0.0
    mariadbd_cpu: float = 0.0
    pg_cpu: float = 0.0
    others_cpu: float = 0.0
    product_bytes: int = 0
    product_ts_bytes: int = 0
    tables: dict[str, dict[str, Any]] = field(default_factory=dict)
    phases: dict[str, Any] = field(default_factory=dict)
    dbt: dict[str, Any] = field(default_factory=dict)
    check: str = ""
    notes: list[str] = field(default_factory=list)
    log: str = ""
