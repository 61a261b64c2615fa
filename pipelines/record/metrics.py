"""The product's Prometheus metrics: the textfile a run writes and the service's ``/metrics``.

One collector, `SyncMetrics`, yields every metric family from what the audit says (a
`Status`) and how the last run went. The same code serves both readers: a run writes it to
its ``--metrics-file`` (`write_textfile`, for node_exporter's textfile collector), the
HTTP service answers ``/metrics`` with it (`exposition`). The names, types and help texts
are in `FAMILIES`, and docs/operations.md lists them.
"""

from __future__ import annotations

import datetime as dt
import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from prometheus_client import CollectorRegistry, generate_latest, write_to_textfile
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from pipelines.config import Settings
from pipelines.errors import PipelineError
from pipelines.paths import read_last_run
from pipelines.record.status import Status, collect

PREFIX = "kimai_atlas_sync_"

FAMILIES: dict[str, tuple[str, str]] = {
    "last_run_success": ("gauge", "1 if the last run succeeded."),
    "last_run_duration_seconds": ("gauge", "Wall time of the last run."),
    "last_run_timestamp_seconds": ("gauge", "When the last run ended."),
    "audit_readable": (
        "gauge",
        "1 if the run could read the audit in Atlas DB (0: only the run's own gauges are current).",
    ),
    "lock_refused": (
        "gauge",
        "1 if the newest start found another run holding the run lock (it did nothing; the"
        " last-run gauges are the holder's predecessor's).",
    ),
    "lock_refused_timestamp_seconds": (
        "gauge",
        "When that start was refused (0: the newest start was not).",
    ),
    "bi_build_published_timestamp_seconds": ("gauge", "When the build BI reads was published."),
    "last_build_success": ("gauge", "1 if the last dbt build that ended was published."),
    "errors_total": ("counter", "Runs that failed or crashed (sync.errors)."),
    "upserts_total": ("counter", "Rows inserted or updated (sync.<table>.upserts)."),
    "lag_seconds": ("gauge", "Seconds since the table was last synced."),
    "replica_rows": ("gauge", "Rows in the replica table."),
    "kimai_rows": ("gauge", "Rows Kimai had at the last sync."),
    "differences_unrepaired": ("gauge", "Differences the last reconcile left."),
    "follower_lag_seconds": (
        "gauge",
        "Seconds since the follower's newest good tick started (no sample: no follower).",
    ),
}
"""Every family (without `PREFIX`): its type and help text, in the order they are written."""

_TABLE_GAUGES = ("lag_seconds", "replica_rows", "kimai_rows", "differences_unrepaired")
"""Per-table gauges: each is the `TableHealth` attribute of the same name."""


@dataclass(frozen=True)
class LastRun:
    """How the last run went, as the last-run gauges report it."""

    outcome: str
    """``success`` or anything else (failed, locked, unknown, none)."""
    duration_seconds: float
    ended_at: dt.datetime


def _family(name: str, labels: tuple[str, ...] = ()) -> GaugeMetricFamily | CounterMetricFamily:
    kind, help_text = FAMILIES[name]
    cls = CounterMetricFamily if kind == "counter" else GaugeMetricFamily
    return cls(PREFIX + name, help_text, labels=labels)


def _seconds(moment: dt.datetime | None) -> float:
    """A Unix time in whole seconds (0 for none), as the textfile always gave it."""
    return float(round(moment.timestamp())) if moment is not None else 0.0


class SyncMetrics(Collector):
    """The product's metric families, from a `Status` read beforehand.

    Collecting reads no database: what the families say was read when the collector was
    made, so the textfile and an answer of ``/metrics`` are one consistent snapshot.
    """

    def __init__(
        self,
        last_run: LastRun,
        status: Status | None,
        lock_refused_at: dt.datetime | None = None,
    ) -> None:
        """Report `last_run`, and the audit's `status` (None: Atlas DB could not be read).

        Args:
            last_run: The run the last-run gauges describe.
            status: What `collect` read; None writes only the run's own gauges, with
                ``audit_readable`` 0.
            lock_refused_at: When the newest start was refused for the lock another run
                held.

        """
        self.last_run = last_run
        self.status = status
        self.lock_refused_at = lock_refused_at

    def collect(self) -> Iterator[Metric]:
        """Every family, in the order of `FAMILIES` (those of the audit only when read)."""
        run = self.last_run
        values = {
            "last_run_success": 1.0 if run.outcome == "success" else 0.0,
            "last_run_duration_seconds": round(run.duration_seconds, 3),
            "last_run_timestamp_seconds": _seconds(run.ended_at),
            "audit_readable": 0.0 if self.status is None else 1.0,
            "lock_refused": 0.0 if self.lock_refused_at is None else 1.0,
            "lock_refused_timestamp_seconds": _seconds(self.lock_refused_at),
        }
        for name, value in values.items():
            family = _family(name)
            family.add_metric([], value)
            yield family
        if self.status is not None:
            yield from _audit_families(self.status)


def _audit_families(status: Status) -> Iterator[Metric]:
    build = status.build
    for name, value in (
        ("bi_build_published_timestamp_seconds", _seconds(build.served_published_at)),
        # a build found unchanged left BI on a green build, as a published one does
        ("last_build_success", 1.0 if build.last_status in {"published", "unchanged"} else 0.0),
        ("errors_total", float(status.errors_total)),
    ):
        family = _family(name)
        family.add_metric([], value)
        yield family
    upserts = _family("upserts_total", ("table",))
    for table, rows in sorted(status.upserts_total.items()):
        upserts.add_metric([table], float(rows))
    yield upserts
    for name in _TABLE_GAUGES:
        family = _family(name, ("table",))
        for table in status.tables:
            value = getattr(table, name)
            if value is not None:  # never measured: no sample rather than a made-up 0
                family.add_metric([table.table_name], float(value))
        yield family
    lag = _family("follower_lag_seconds")
    if status.follower is not None and status.follower.lag_seconds is not None:
        lag.add_metric([], round(status.follower.lag_seconds, 3))
    yield lag


def unreadable(outcome: str, duration_seconds: float) -> SyncMetrics:
    """The run's own gauges, when Atlas DB cannot be read (the run could not reach it).

    The file must still say that the last run failed: a stale file from an earlier run
    would keep reporting its success.
    """
    return SyncMetrics(LastRun(outcome, duration_seconds, dt.datetime.now(dt.UTC)), None)


def from_audit(settings: Settings, lock_refused: bool = False) -> SyncMetrics:
    """Metrics whose last run is the newest run of the audit that ended.

    For readers other than the run itself: the HTTP service's ``/metrics``, and a start
    refused because another run holds the lock (`lock_refused`), which did nothing of its
    own to report.
    """
    refused_at = dt.datetime.now(dt.UTC) if lock_refused else None
    try:
        status = collect(settings)
    except PipelineError:  # Atlas DB unreachable: say so, as the run's own file does
        return unreadable("unknown", 0.0)
    ended = next((r for r in status.runs if r["status"] != "running"), None)
    local = read_last_run(settings)
    audited_at = None if ended is None else (ended["finished_at"] or ended["started_at"])
    if local is not None and (audited_at is None or local["finished_at"] > audited_at.timestamp()):
        # a run on this host ended after the audit's last one: its audit row may be missing
        # (Atlas DB read-only, the lock lost), and a failure must not read as the success
        # before it
        finished = dt.datetime.fromtimestamp(local["finished_at"], dt.UTC)
        last = LastRun(local["status"], local["seconds"], finished)
    elif ended is None:
        last = LastRun("none", 0.0, dt.datetime.fromtimestamp(0, dt.UTC))
    else:
        finished = ended["finished_at"]
        seconds = (finished - ended["started_at"]).total_seconds() if finished else 0.0
        last = LastRun(ended["status"], seconds, finished or ended["started_at"])
    return SyncMetrics(last, status, lock_refused_at=refused_at)


def for_run(settings: Settings, outcome: str, duration_seconds: float) -> SyncMetrics:
    """What a run of the command line reports as it ends (``--metrics-file``).

    Args:
        settings: Runtime settings (Atlas DB is read for the audit's families).
        outcome: ``success``, ``failed``, or ``locked`` (the start was refused for the lock:
            the audit's newest ended run is reported, with ``lock_refused`` 1).
        duration_seconds: The run's wall time.

    """
    try:
        if outcome == "locked":
            return from_audit(settings, lock_refused=True)
        status = collect(settings)
    except Exception:  # Atlas DB unreachable: the run's own gauges must still be current
        return unreadable(outcome, duration_seconds)
    return SyncMetrics(LastRun(outcome, duration_seconds, status.now), status)


def registry(metrics: SyncMetrics) -> CollectorRegistry:
    """A registry holding only `metrics` (not the process's default one)."""
    found = CollectorRegistry(auto_describe=False)
    found.register(metrics)
    return found


def exposition(metrics: SyncMetrics) -> bytes:
    """The Prometheus text format of `metrics`: ``/metrics``'s answer, the textfile's content."""
    return generate_latest(registry(metrics))


def write_textfile(path: Path, metrics: SyncMetrics) -> None:
    """Replace the textfile at `path` atomically (node_exporter never reads half a file).

    The file is readable by everyone (0644), as node_exporter runs as another user,
    whatever the umask of the run.
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    # write_to_textfile creates its file with the process's umask: this one sets 0644;
    # a run writes its file once, at its end, from the main thread
    previous = os.umask(0o022)
    try:
        write_to_textfile(str(path), registry(metrics))
    finally:
        os.umask(previous)
