"""Where a deployment keeps its local working files: dlt's pipeline state and dbt's target.

One directory per deployment (Atlas DB location and schemas), so that two deployments on
one host (two Atlas DBs, a staging and a production copy) never share dlt's working state
or dbt's partial-parse files: two runs for different databases at once were seen to corrupt
each other through a shared dlt directory. The directories are private (0700): dlt's load
packages hold replica rows, and dbt's target holds compiled SQL and run results.
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
import time
from pathlib import Path
from typing import Any

from pipelines.config import Settings
from pipelines.errors import ConfigError

DEFAULT_BASE = Path("~/.local/state/kimai-atlas")
"""Base of the working directories when ``ATLAS_SYNC_STATE_DIR`` is not set."""


def deployment_key(settings: Settings) -> str:
    """A short stable name of the deployment: Atlas DB's location and the schemas."""
    where = "|".join(
        (
            settings.describe_atlas(),
            settings.replica_schema,
            settings.analytics_schema,
            settings.overlay_schema,
        )
    )
    return hashlib.sha256(where.encode()).hexdigest()[:12]


def private_dir(path: Path) -> Path:
    """Create `path` (and its parents) readable by this user only, and check it is usable.

    Raises:
        ConfigError: The directory cannot be created or written, or another user owns it
            (exit 2; the message names ``ATLAS_SYNC_STATE_DIR``).

    """
    try:
        path.mkdir(mode=0o700, parents=True, exist_ok=True)
        if path.stat().st_uid != os.getuid():
            raise PermissionError(f"owned by another user (uid {path.stat().st_uid})")
        path.chmod(0o700)
        # a name of its own: two processes starting together must not remove each other's
        fd, probe = tempfile.mkstemp(dir=path, prefix=".write-check-")
        os.close(fd)
        os.unlink(probe)
    except OSError as exc:
        raise ConfigError(
            f"cannot use {path} for the sync's working files ({exc.strerror or exc});"
            " set ATLAS_SYNC_STATE_DIR to a directory this user can write"
        ) from None
    return path


def _base(settings: Settings) -> Path:
    return (settings.state_dir or DEFAULT_BASE).expanduser()


def dlt_pipelines_dir(settings: Settings) -> Path:
    """Dlt's ``pipelines_dir`` for this deployment (its state also lives in Atlas DB)."""
    return private_dir(_base(settings) / "dlt" / deployment_key(settings))


def dbt_work_dir(settings: Settings) -> Path:
    """Dbt's target and log directory for this deployment."""
    return private_dir(
        _base(settings) / "dbt" / f"{settings.pipeline_name}-{deployment_key(settings)}"
    )


def last_run_file(settings: Settings) -> Path:
    """Where this host keeps the outcome of the deployment's last run (`record_last_run`)."""
    return _base(settings) / "runs" / f"{deployment_key(settings)}.json"


def record_last_run(settings: Settings, status: str, seconds: float) -> None:
    """Keep the outcome of a run that ended, whether or not its audit row could be written.

    Metrics must never report an earlier success when a run failed without an audit row
    (Atlas DB read-only or unreachable, the lock lost): `pipelines.record.metrics` takes this
    outcome when it is newer than the audit's last run.

    Raises:
        OSError: The file could not be written.

    """
    path = last_run_file(settings)
    private_dir(path.parent)
    record = {"status": status, "finished_at": time.time(), "seconds": round(seconds, 3)}
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".last-run-")
    with os.fdopen(fd, "w") as handle:
        json.dump(record, handle)
    os.replace(tmp, path)


def read_last_run(settings: Settings) -> dict[str, Any] | None:
    """The record of `record_last_run`, or None when there is none (or it is unreadable)."""
    try:
        record = json.loads(last_run_file(settings).read_text())
        return {
            "status": str(record["status"]),
            "finished_at": float(record["finished_at"]),
            "seconds": float(record["seconds"]),
        }
    except (OSError, ValueError, KeyError, TypeError):
        return None
