"""The product's metric families, written out here independently of the product.

Names, types, help texts and label names as docs/operations.md ("Metrics") and the
textfiles of earlier releases give them; `parse` reads an exposition (the textfile or
``/metrics``) with prometheus_client's own parser.
"""

from __future__ import annotations

from dataclasses import dataclass

from prometheus_client.parser import text_string_to_metric_families

# always written, even when the run could not read the audit
RUN_FAMILIES = [
    ("kimai_atlas_sync_last_run_success", "gauge", "1 if the last run succeeded.", ()),
    ("kimai_atlas_sync_last_run_duration_seconds", "gauge", "Wall time of the last run.", ()),
    ("kimai_atlas_sync_last_run_timestamp_seconds", "gauge", "When the last run ended.", ()),
    (
        "kimai_atlas_sync_audit_readable",
        "gauge",
        "1 if the run could read the audit in Atlas DB (0: only the run's own gauges are current).",
        (),
    ),
    (
        "kimai_atlas_sync_lock_refused",
        "gauge",
        "1 if the newest start found another run holding the run lock (it did nothing; the"
        " last-run gauges are the holder's predecessor's).",
        (),
    ),
    (
        "kimai_atlas_sync_lock_refused_timestamp_seconds",
        "gauge",
        "When that start was refused (0: the newest start was not).",
        (),
    ),
]
# written when the audit in Atlas DB was read
AUDIT_FAMILIES = [
    (
        "kimai_atlas_sync_bi_build_published_timestamp_seconds",
        "gauge",
        "When the build BI reads was published.",
        (),
    ),
    (
        "kimai_atlas_sync_last_build_success",
        "gauge",
        "1 if the last dbt build that ended was published.",
        (),
    ),
    ("kimai_atlas_sync_errors_total", "counter", "Runs that failed or crashed (sync.errors).", ()),
    (
        "kimai_atlas_sync_upserts_total",
        "counter",
        "Rows inserted or updated (sync.<table>.upserts).",
        ("table",),
    ),
    (
        "kimai_atlas_sync_lag_seconds",
        "gauge",
        "Seconds since the table was last synced.",
        ("table",),
    ),
    ("kimai_atlas_sync_replica_rows", "gauge", "Rows in the replica table.", ("table",)),
    ("kimai_atlas_sync_kimai_rows", "gauge", "Rows Kimai had at the last sync.", ("table",)),
    (
        "kimai_atlas_sync_differences_unrepaired",
        "gauge",
        "Differences the last reconcile left.",
        ("table",),
    ),
    (
        "kimai_atlas_sync_follower_lag_seconds",
        "gauge",
        "Seconds since the follower's newest good tick started (no sample: no follower).",
        (),
    ),
]
ALL_FAMILIES = RUN_FAMILIES + AUDIT_FAMILIES


@dataclass
class Parsed:
    """An exposition, read back: its families in order, and its samples' values."""

    families: list[tuple[str, str, str, tuple[str, ...]]]
    """(name as in its HELP line, type, help, label names of its samples) per family."""
    values: dict[tuple[str, tuple[tuple[str, str], ...]], float]
    """Value per (sample name, sorted labels)."""

    def value(self, name: str, **labels: str) -> float:
        return self.values[(name, tuple(sorted(labels.items())))]

    def per_table(self, name: str) -> dict[str, float]:
        return {dict(k[1])["table"]: v for k, v in self.values.items() if k[0] == name}


def parse(text: str, labels: dict[str, tuple[str, ...]] | None = None) -> Parsed:
    """Read `text` with prometheus_client's parser.

    A family without samples has no label names to show: its expected ones are taken
    from `ALL_FAMILIES` only if it has none.
    """
    expected = {name: names for name, _, _, names in ALL_FAMILIES}
    families, values = [], {}
    for family in text_string_to_metric_families(text):
        # the parser names a counter's family without its _total suffix
        name = family.name + ("_total" if family.type == "counter" else "")
        names = sorted({k for s in family.samples for k in s.labels})
        if not family.samples:
            names = list(expected.get(name, ()))
        families.append((name, family.type, family.documentation, tuple(names)))
        for sample in family.samples:
            key = (sample.name, tuple(sorted(sample.labels.items())))
            assert key not in values, f"{key} twice"
            values[key] = sample.value
    return Parsed(families, values)
