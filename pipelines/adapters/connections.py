"""The connections and table layouts the follower keeps from one tick to the next.

A scheduled run connects, reads Kimai's catalog for the tables' layouts, and closes it all
at the end. The follower runs every `ATLAS_FOLLOW_INTERVAL_SECONDS`, so it keeps what does
not change between ticks: the Kimai engine's connections (checked before each use), the
replica's connection, and the layouts. The layouts are read again once they are older than
the sweep's lag, after a tick that compared tables whole (a DDL the binlog named), and
whenever a tick failed (the follower then drops everything and connects afresh), so a
Kimai upgrade's new column reaches the replica within ``ATLAS_DELETE_MAX_LAG_SECONDS``.
"""

from __future__ import annotations

import time
from collections.abc import Sequence

from pipelines.adapters.kimai import Kimai
from pipelines.adapters.layout import TableLayout
from pipelines.adapters.replica import Replica, open_replica
from pipelines.config import Settings
from pipelines.registry import TableSpec


class Connections:
    """Kimai, the replica and the tables' layouts, kept open until `close`.

    Args:
        settings: Runtime settings.
        layouts_max_age_seconds: How long layouts are reused before the catalog is read again.

    """

    def __init__(self, settings: Settings, layouts_max_age_seconds: float) -> None:
        self.kimai = Kimai(settings, keep_connections=True)
        self.replica: Replica = open_replica(settings)
        self.layouts_max_age_seconds = layouts_max_age_seconds
        self._layouts: dict[str, TableLayout] = {}
        self._read_at = 0.0
        self.catalog_reads = 0
        """How often Kimai's catalog was read for layouts (what the keeping saves)."""

    def layouts(self, specs: Sequence[TableSpec]) -> list[TableLayout]:
        """The tables' layouts: kept ones while fresh, otherwise read from Kimai's catalog.

        Raises:
            KimaiSchemaError: A table, its key or its cursor is missing (or not readable).

        """
        if time.monotonic() - self._read_at > self.layouts_max_age_seconds:
            self._layouts = {}
        missing = [spec for spec in specs if spec.name not in self._layouts]
        if missing:
            if not self._layouts:
                self._read_at = time.monotonic()
            self._layouts.update({lay.spec.name: lay for lay in self.kimai.layouts(missing)})
            self.catalog_reads += 1
        return [self._layouts[spec.name] for spec in specs]

    def forget_layouts(self) -> None:
        """Read the layouts again on next use (Kimai's tables may have changed)."""
        self._layouts = {}

    def close(self) -> None:
        """Close both connections."""
        self.kimai.close()
        self.replica.close()
