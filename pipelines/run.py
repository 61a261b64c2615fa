"""Command line: ``python -m pipelines.run [COMMAND]`` (see the README's CLI reference)."""

from __future__ import annotations

import datetime as dt
import os
import sys
import traceback
from collections.abc import Callable
from typing import Annotated, Any

import typer

from pipelines.errors import EXIT_BAD_CONFIG, EXIT_DATABASE, ConfigError, PipelineError

app = typer.Typer(
    help="Keep a faithful replica of Kimai in Atlas DB and build the BI views with dbt.\n\n"
    "Without a command: sync every table, then run `dbt build` (the scheduled job).",
    add_completion=False,
    pretty_exceptions_enable=False,
    rich_markup_mode=None,
    context_settings={"help_option_names": ["-h", "--help"]},
)

FullRefresh = Annotated[
    bool,
    typer.Option("--full-refresh", help="Re-read every row from Kimai and rewrite the replica."),
]
Since = Annotated[
    str | None,
    typer.Option(
        "--since",
        metavar="DATE",
        help="Also re-read timesheets whose local day (date_tz) is on or after DATE (YYYY-MM-DD).",
    ),
]
AllowMassDelete = Annotated[
    bool,
    typer.Option(
        "--allow-mass-delete",
        help="Apply deletes even when they exceed ATLAS_MASS_DELETE_MAX_SHARE of a table.",
    ),
]
Debug = Annotated[bool, typer.Option("--debug", help="Show tracebacks of errors.")]
DryRun = Annotated[
    bool,
    typer.Option("--dry-run", help="Show what would change; write nothing, keep the sync state."),
]
Tables = Annotated[
    list[str] | None,
    typer.Argument(
        metavar="[TABLE]...",
        help="Short table names (timesheets, projects, users, activities, tags, "
        "timesheet_tags, customers); all when omitted.",
        show_default=False,
    ),
]


def _fail(message: str, code: int) -> None:
    print(f"error: {message}", file=sys.stderr)
    raise typer.Exit(code)


def _guarded(debug: bool, fn: Callable[[], Any]) -> Any:
    """Run `fn`, turning expected failures into one stderr line and the contract's exit code."""
    # connectorx (Rust) prints a stack trace on a dropped connection unless told not to
    os.environ["RUST_BACKTRACE"] = "1" if debug else "0"
    try:
        return fn()
    except typer.Exit:
        raise
    except PipelineError as exc:
        if debug:
            traceback.print_exc()
        _fail(str(exc), exc.exit_code)
    except KeyboardInterrupt:
        _fail("interrupted; the next run repairs whatever this one left unfinished", EXIT_DATABASE)
    except Exception as exc:  # a bug or an unforeseen driver error: still one line
        if debug:
            traceback.print_exc()
        first = (str(exc).strip().splitlines() or [""])[0]
        _fail(f"unexpected {type(exc).__name__}: {first} (rerun with --debug)", EXIT_DATABASE)


def _parse_since(since: str | None) -> dt.date | None:
    if since is None:
        return None
    try:
        return dt.date.fromisoformat(since)
    except ValueError:
        raise ConfigError(f"--since must be a date like 2024-01-31, got {since!r}") from None


Wait = Annotated[
    float,
    typer.Option(
        "--wait",
        metavar="SECONDS",
        help="If another run holds the lock, wait up to SECONDS for it instead of exiting 3.",
        min=0,
    ),
]


def _run(
    command: str,
    *,
    sync: bool = True,
    transform: bool = False,
    tables: list[str] | None = None,
    full_refresh: bool = False,
    since: str | None = None,
    allow_mass_delete: bool = False,
    dry_run: bool = False,
    reconcile: bool = False,
    wait: float = 0.0,
) -> None:
    from pipelines.config import load_settings
    from pipelines.registry import select_tables
    from pipelines.report import progress_printer, summary_table
    from pipelines.runner import RunRequest, execute
    from pipelines.source import SyncOptions

    settings = load_settings()
    try:
        select_tables(tables)
    except KeyError as exc:
        raise ConfigError(str(exc.args[0])) from None
    request = RunRequest(
        command=command,
        sync=sync,
        transform=transform,
        tables=tables,
        options=SyncOptions(
            full_refresh=full_refresh,
            since=_parse_since(since),
            overlap_seconds=settings.overlap_seconds,
            reconcile=reconcile or settings.reconcile_every_run,
        ),
        allow_mass_delete=allow_mass_delete,
        dry_run=dry_run,
        wait_seconds=wait,
    )
    outcome = execute(settings, request, say=progress_printer())
    if outcome.sync is not None:
        print(summary_table(outcome.sync.tables))
        done = "dry run: nothing was written" if dry_run else "sync finished"
        print(f"{done} in {outcome.sync.seconds:.1f} s")
    if outcome.transform is not None:
        t = outcome.transform
        print(f"dbt build passed: {t.passed} nodes ok, {len(t.warned)} warnings")


@app.callback(invoke_without_command=True)
def scheduled(
    ctx: typer.Context,
    full_refresh: FullRefresh = False,
    since: Since = None,
    allow_mass_delete: AllowMassDelete = False,
    wait: Wait = 0.0,
    debug: Debug = False,
) -> None:
    """Sync every table, then run dbt build; exit 0 only if both succeed."""
    if ctx.invoked_subcommand is not None:
        return
    _guarded(
        debug,
        lambda: _run(
            "run",
            transform=True,
            full_refresh=full_refresh,
            since=since,
            allow_mass_delete=allow_mass_delete,
            wait=wait,
        ),
    )


@app.command("sync")
def sync_command(
    tables: Tables = None,
    full_refresh: FullRefresh = False,
    since: Since = None,
    allow_mass_delete: AllowMassDelete = False,
    dry_run: DryRun = False,
    wait: Wait = 0.0,
    debug: Debug = False,
) -> None:
    """Extract-load only: make the replica tables equal to Kimai."""
    _guarded(
        debug,
        lambda: _run(
            "sync",
            tables=tables,
            full_refresh=full_refresh,
            since=since,
            allow_mass_delete=allow_mass_delete,
            dry_run=dry_run,
            wait=wait,
        ),
    )


@app.command("transform")
def transform_command(wait: Wait = 0.0, debug: Debug = False) -> None:
    """Run dbt build only (models and data tests)."""
    _guarded(debug, lambda: _run("transform", sync=False, transform=True, wait=wait))


@app.command("reconcile")
def reconcile_command(
    tables: Tables = None,
    allow_mass_delete: AllowMassDelete = False,
    dry_run: DryRun = False,
    wait: Wait = 0.0,
    debug: Debug = False,
) -> None:
    """Compare every replicated column of every row with Kimai and repair every difference.

    Unchanged rows are not transferred: both databases fingerprint key ranges and only
    ranges that differ are compared row by row. Deletes are applied as in sync.
    """
    _guarded(
        debug,
        lambda: _run(
            "reconcile",
            tables=tables,
            allow_mass_delete=allow_mass_delete,
            dry_run=dry_run,
            reconcile=True,
            wait=wait,
        ),
    )


@app.command("status")
def status_command(debug: Debug = False) -> None:
    """Show the last runs, per-table lag and row counts, and the last reconciliation."""
    _guarded(debug, lambda: _fail("status is not available yet", EXIT_BAD_CONFIG))


@app.command("demo")
def demo_command(debug: Debug = False) -> None:
    """Run the whole product end to end on an embedded database (no servers needed)."""
    _guarded(debug, lambda: _fail("the embedded demo is not available yet", EXIT_BAD_CONFIG))


def main() -> None:
    """Console-script entry point."""
    app()


if __name__ == "__main__":
    main()
