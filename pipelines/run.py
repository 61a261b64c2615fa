"""Command line: ``python -m pipelines.run [COMMAND]`` (see the README, "Command line").

This module only parses options and prints results; the work is in `pipelines.runner`.
Expected failures print one line on stderr and exit with the contract's code.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import sys
import time
import traceback
from collections.abc import Callable
from enum import StrEnum
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from pipelines import rust_panics
from pipelines.errors import (
    EXIT_BAD_CONFIG,
    EXIT_DATA_TEST_FAILED,
    EXIT_DATABASE,
    ConfigError,
    LockHeld,
    PipelineError,
)
from pipelines.registry import TABLES_BY_NAME
from pipelines.serve.server import LIMIT_CONCURRENCY

if TYPE_CHECKING:
    from pipelines.publish import BuildRequest

app = typer.Typer(
    help="Keep a faithful replica of Kimai in Atlas DB and build the BI views with dbt.\n\n"
    "Without a command: sync every table, then run `dbt build` (the scheduled job).\n\n"
    "Exit codes: 0 success, 1 a data test failed (or status: data is stale), 2 bad "
    "configuration or usage, 3 another run holds the lock, 4 a database was unreachable "
    "or failed.",
    add_completion=False,
    pretty_exceptions_enable=False,
    rich_markup_mode=None,
    context_settings={"help_option_names": ["-h", "--help"]},
)


class LogFormat(StrEnum):
    """Log line formats."""

    auto = "auto"
    text = "text"
    json = "json"


class Trigger(StrEnum):
    """Who started the run (recorded in the audit)."""

    auto = "auto"
    cli = "cli"
    cron = "cron"
    manual = "manual"


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
DryRun = Annotated[
    bool,
    typer.Option("--dry-run", help="Show what would change; write nothing, keep the sync state."),
]
Wait = Annotated[
    float,
    typer.Option(
        "--wait",
        metavar="SECONDS",
        help="If another run holds the lock, wait up to SECONDS instead of exiting with 3.",
        min=0,
    ),
]
MetricsFile = Annotated[
    Path | None,
    typer.Option(
        "--metrics-file",
        metavar="PATH",
        help="Write Prometheus metrics to PATH after the run (node_exporter textfile collector).",
    ),
]
TriggerOpt = Annotated[
    Trigger,
    typer.Option(
        "--trigger",
        metavar="auto|cli|cron|manual",
        help="Recorded in the run audit; auto = cli on a terminal, else cron.",
    ),
]
LogFormatOpt = Annotated[
    LogFormat,
    typer.Option(
        "--log-format",
        metavar="auto|text|json",
        help="auto: progress on a terminal, warnings only otherwise; json: JSON lines on stderr.",
    ),
]
Debug = Annotated[bool, typer.Option("--debug", help="Show tracebacks of errors.")]
# Arguments are described below their command's options (or in its text) and hidden from
# the argument list: typer writes a Python type beside every argument there
# (`TABLE <list[str]>`), which no metavar replaces; the usage line still shows them
# (`[TABLE]...`).
Tables = Annotated[
    list[str] | None,
    typer.Argument(metavar="TABLE", hidden=True, show_default=False),
]
TABLES_EPILOG = f"TABLE: short table names ({', '.join(TABLES_BY_NAME)}); all when omitted."


def _port_number(value: int) -> int:
    # checked here rather than by typer's max=, whose help would read "0<=x<=65535"
    if not 0 <= value <= 65535:
        raise typer.BadParameter(f"{value} is not a TCP port (0-65535)")
    return value


def _fail(message: str, code: int) -> None:
    print(f"error: {message}", file=sys.stderr)
    raise typer.Exit(code)


def _guarded(debug: bool, fn: Callable[[], Any]) -> Any:
    """Run `fn`, turning expected failures into one stderr line and the contract's exit code."""
    # connectorx (Rust) prints a stack trace on a dropped connection unless told not to
    os.environ["RUST_BACKTRACE"] = "1" if debug else "0"
    if not debug:  # and its panic text, before the run's own one-line error
        rust_panics.install()
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


def _start(ctx: typer.Context, command: str, consumed: tuple[str, ...] = (), **fixed: Any) -> None:
    """Run `command` with the options it was given on the command line.

    Every option reaches `_run` by name, so an option `_run` does not take fails loudly
    instead of being dropped.

    Args:
        ctx: The command's context; its ``params`` are every option as parsed.
        command: The audit's command name.
        consumed: Options the command has turned into something else (e.g. into `build`).
        **fixed: What the command itself decides (e.g. ``transform=True``).

    """
    params = {k: v for k, v in ctx.params.items() if k not in consumed}
    params.update(fixed)
    _guarded(params["debug"], lambda: _run(command, **params))


def _run(
    command: str,
    *,
    log_format: LogFormat,
    debug: bool,
    sync: bool = True,
    transform: bool = False,
    tables: list[str] | None = None,
    full_refresh: bool = False,
    since: str | None = None,
    allow_mass_delete: bool = False,
    dry_run: bool = False,
    reconcile: bool = False,
    wait: float = 0.0,
    metrics_file: Path | None = None,
    trigger: Trigger = Trigger.auto,
    build: BuildRequest | None = None,
) -> None:
    from pipelines.config import load_settings
    from pipelines.logs import configure
    from pipelines.publish import BuildRequest
    from pipelines.registry import select_tables
    from pipelines.report import summary_table
    from pipelines.runner import RunRequest, execute
    from pipelines.types import SyncOptions

    say = configure(log_format.value, debug)
    started = time.monotonic()
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
        trigger=None if trigger is Trigger.auto else trigger.value,
        build=build or BuildRequest(),
    )
    outcome = "failed"
    try:
        result = execute(settings, request, say=say)
        outcome = "success"
    except LockHeld:
        outcome = "locked"  # did nothing: the holder writes the next run's outcome
        raise
    finally:
        if metrics_file is not None:
            _write_metrics(settings, metrics_file, outcome, time.monotonic() - started)
    if result.sync is not None:
        print(summary_table(result.sync.tables))
        if result.sync.guard_refusal:
            print(f"dry run: a real run would stop here: {result.sync.guard_refusal}")
        if dry_run and result.sync.resumed_pending:
            print("dry run: an interrupted run left a load pending; a real run completes it first")
        done = "dry run: nothing was written" if dry_run else "sync finished"
        print(f"{done} in {result.sync.seconds:.1f} s")
    if result.unchanged is not None:
        print(f"dbt build skipped: {result.unchanged}; what BI reads is current")
    if result.transform is not None:
        t = result.transform
        kind = (
            "delta build passed (set-level checks wait for the full audit)"
            if t.delta
            else "dbt build passed"
        )
        print(f"{kind}: {t.passed} nodes ok, {len(t.warned)} warnings")
        if t.published_at is not None:
            print(f"published: BI reads this build since {t.published_at:%Y-%m-%d %H:%M:%S %Z}")


def _write_metrics(settings: Any, path: Path, outcome: str, seconds: float) -> None:
    from pipelines.record import metrics

    try:
        metrics.write_textfile(path, metrics.for_run(settings, outcome, seconds))
    except Exception as exc:  # metrics must never turn a good run into a failed one
        print(f"warning: could not write metrics to {path}: {exc}", file=sys.stderr)


@app.callback(invoke_without_command=True)
def scheduled(
    ctx: typer.Context,
    full_refresh: FullRefresh = False,
    since: Since = None,
    allow_mass_delete: AllowMassDelete = False,
    wait: Wait = 0.0,
    metrics_file: MetricsFile = None,
    trigger: TriggerOpt = Trigger.auto,
    log_format: LogFormatOpt = LogFormat.auto,
    debug: Debug = False,
) -> None:
    """Sync every table, then run dbt build; exit 0 only if both succeed."""
    if ctx.invoked_subcommand is not None:
        given = [
            name
            for name, value in ctx.params.items()
            # by name: typer may bring its own copy of click's enum
            if getattr(ctx.get_parameter_source(name), "name", "DEFAULT") != "DEFAULT"
        ]
        if given:
            # they would be silently dropped: each command takes its own options
            options = " ".join("--" + n.replace("_", "-") for n in given)
            _fail(
                f"options go after the command: python -m pipelines.run"
                f" {ctx.invoked_subcommand} {options} ...",
                EXIT_BAD_CONFIG,
            )
        return
    _start(ctx, "run", transform=True)


@app.command("sync", epilog=TABLES_EPILOG)
def sync_command(
    ctx: typer.Context,
    tables: Tables = None,
    full_refresh: FullRefresh = False,
    since: Since = None,
    allow_mass_delete: AllowMassDelete = False,
    dry_run: DryRun = False,
    wait: Wait = 0.0,
    metrics_file: MetricsFile = None,
    trigger: TriggerOpt = Trigger.auto,
    log_format: LogFormatOpt = LogFormat.auto,
    debug: Debug = False,
) -> None:
    """Extract-load only: make the replica tables equal to Kimai."""
    _start(ctx, "sync")


@app.command("transform")
def transform_command(
    ctx: typer.Context,
    select: Annotated[
        list[str] | None,
        typer.Option(
            "--select",
            "-s",
            metavar="SELECTOR",
            help="Build only these dbt nodes (dbt's selection syntax; repeatable). The rest"
            " of the project is brought up to date without tests, then all is published.",
            show_default=False,
        ),
    ] = None,
    full_refresh: Annotated[
        bool,
        typer.Option(
            "--full-refresh", help="Rebuild incremental models from scratch (dbt's option)."
        ),
    ] = False,
    wait: Wait = 0.0,
    trigger: TriggerOpt = Trigger.auto,
    log_format: LogFormatOpt = LogFormat.auto,
    debug: Debug = False,
) -> None:
    """Run dbt build only (models and data tests); exit 1 names the failing tests.

    The build goes to shadow schemas and BI switches to it in one transaction once every
    model and test passed; a failed or interrupted build leaves BI on the last good one.
    """
    from pipelines.publish import BuildRequest

    # --full-refresh here is dbt's: it goes into `build`, not into the sync's options
    build = BuildRequest(select=tuple(select or ()), full_refresh=full_refresh)
    _start(
        ctx,
        "transform",
        consumed=("select", "full_refresh"),
        sync=False,
        transform=True,
        build=build,
    )


@app.command("reconcile", epilog=TABLES_EPILOG)
def reconcile_command(
    ctx: typer.Context,
    tables: Tables = None,
    allow_mass_delete: AllowMassDelete = False,
    dry_run: DryRun = False,
    wait: Wait = 0.0,
    metrics_file: MetricsFile = None,
    trigger: TriggerOpt = Trigger.auto,
    log_format: LogFormatOpt = LogFormat.auto,
    debug: Debug = False,
) -> None:
    """Compare every replicated column of every row with Kimai and repair every difference.

    Unchanged rows are not transferred: both databases fingerprint key ranges and only
    ranges that differ are compared row by row. Deletes are applied as in sync.
    """
    _start(ctx, "reconcile", reconcile=True)


@app.command("follow")
def follow_command(
    ticks: Annotated[
        int | None,
        typer.Option(
            "--ticks", metavar="N", min=1, help="Stop after N ticks (default: until SIGTERM)."
        ),
    ] = None,
    no_build: Annotated[
        bool,
        typer.Option(
            "--no-build",
            help="Sync only; leave dbt builds to the scheduled job (the views read the"
            " replica as it is).",
        ),
    ] = False,
    allow_mass_delete: AllowMassDelete = False,
    log_format: LogFormatOpt = LogFormat.auto,
    debug: Debug = False,
) -> None:
    """Keep the replica within seconds of Kimai: a sync every ATLAS_FOLLOW_INTERVAL_SECONDS.

    Each tick takes the run lock, syncs (comparing one slice of each key range, so that
    every range is compared within ATLAS_DELETE_MAX_LAG_SECONDS) and builds when the build's
    inputs changed. Quiet ticks update only the follower's heartbeat. SIGTERM ends it after
    the tick under way (exit 0); a tripped mass-delete guard ends it with exit 4.
    """

    def run() -> None:
        import signal

        from pipelines.config import load_settings
        from pipelines.follow import Follower, StopRequest
        from pipelines.logs import configure

        say = configure(log_format.value, debug)
        stop = StopRequest()
        for signum in (signal.SIGTERM, signal.SIGINT):
            signal.signal(signum, lambda *_: stop.set())
        follower = Follower(
            load_settings(), say, stop, allow_mass_delete=allow_mass_delete, build=not no_build
        )
        done = follower.run(ticks)
        print(f"follower stopped after {done} tick{'s' if done != 1 else ''}")

    _guarded(debug, run)


@app.command("status")
def status_command(
    as_json: Annotated[bool, typer.Option("--json", help="Print only JSON on stdout.")] = False,
    runs: Annotated[
        int, typer.Option("--runs", metavar="N", help="How many recent runs to list.", min=1)
    ] = 10,
    max_lag: Annotated[
        float,
        typer.Option(
            "--max-lag",
            metavar="MINUTES",
            help="Exit 1 when a table was last synced longer ago than this.",
            min=0,
        ),
    ] = 60.0,
    debug: Debug = False,
) -> None:
    """Show the last runs, per-table lag and row counts, and the last reconciliation."""

    def show() -> None:
        from pipelines.config import load_settings
        from pipelines.record.status import collect, render

        settings = load_settings()
        settings.require_atlas_file()
        status = collect(settings, last_runs=runs, max_lag_seconds=max_lag * 60)
        if as_json:
            print(json.dumps(status.as_json(), indent=2))
        else:
            print(render(status))
        if status.stale:
            raise typer.Exit(EXIT_DATA_TEST_FAILED)

    _guarded(debug, show)


@app.command("demo")
def demo_command(
    directory: Annotated[
        Path | None,
        typer.Option(
            "--dir",
            metavar="DIR",
            help="Where the demo keeps everything it makes (Kimai's SQLite file, the DuckDB"
            " file, sync state, dbt's files). Default: ./kimai-atlas-demo",
            show_default=False,
        ),
    ] = None,
    scale: Annotated[
        int | None,
        typer.Option(
            "--scale",
            metavar="N",
            help="Timesheets to generate on the first run. Default: 5000",
            min=100,
            show_default=False,
        ),
    ] = None,
    seed: Annotated[
        int | None,
        typer.Option(
            "--seed",
            metavar="N",
            help="Seed of the data generated on the first run: the same seed, scale and day"
            " (UTC) give the same data. Default: 42",
            min=0,
            show_default=False,
        ),
    ] = None,
    reset: Annotated[
        bool, typer.Option("--reset", help="Delete what an earlier demo made in DIR; start over.")
    ] = False,
    edge_cases: Annotated[
        bool,
        # for tests: the generators' edge cases have no place in a report for people
        typer.Option("--edge-cases", hidden=True),
    ] = False,
    log_format: LogFormatOpt = LogFormat.auto,
    debug: Debug = False,
) -> None:
    """Run the whole product end to end on embedded databases (no servers, no settings).

    The first run generates a Kimai database (SQLite) and Atlas's overlay tables, syncs
    them into a DuckDB file with the production sync, runs dbt build and prints a report.
    Each later run in the same DIR first simulates a day of Kimai activity. KIMAI_*,
    ATLAS_* and DBT_PROFILES_DIR are ignored.
    """

    def demo() -> None:
        from pipelines.demo.runner import DEFAULT_DIR, render, run_demo
        from pipelines.logs import configure

        say = configure(log_format.value, debug)
        result = run_demo(
            directory or DEFAULT_DIR, scale, reset=reset, say=say, seed=seed, edge_cases=edge_cases
        )
        print(render(result))

    _guarded(debug, demo)


@app.command("serve")
def serve_command(
    host: Annotated[
        str,
        typer.Option(
            "--host",
            metavar="ADDRESS",
            help="Address to listen on (loopback unless --allow-remote).",
        ),
    ] = "127.0.0.1",
    port: Annotated[
        int,
        typer.Option("--port", metavar="PORT", help="TCP port (0-65535).", callback=_port_number),
    ] = 8000,
    allow_remote: Annotated[
        bool,
        typer.Option(
            "--allow-remote",
            help="Allow a non-loopback --host (put a TLS proxy in front: tokens travel in"
            " every request).",
        ),
    ] = False,
    drain_seconds: Annotated[
        float,
        typer.Option(
            "--drain-seconds",
            metavar="SECONDS",
            help="On SIGTERM, wait up to SECONDS for a running run before exiting.",
            min=0,
        ),
    ] = 600.0,
    docs: Annotated[
        bool,
        typer.Option(
            "--docs",
            help="Serve the OpenAPI schema and its pages (/openapi.json, /docs, /redoc),"
            " readable without a token; off by default.",
        ),
    ] = False,
    limit_concurrency: Annotated[
        int,
        typer.Option(
            "--limit-concurrency",
            metavar="N",
            help="Open connections (and requests) at once; past N the service answers 503.",
            min=1,
        ),
    ] = LIMIT_CONCURRENCY,
    log_format: LogFormatOpt = LogFormat.auto,
    debug: Debug = False,
) -> None:
    """Serve the HTTP API: start runs, read their audit, status, metrics, a health page.

    Needs ATLAS_API_TOKENS_FILE (see `token create`). Runs go through the same lock, audit
    (trigger api, started by the token's name) and dbt build as on the command line. The
    Host header must name loopback, --host or one of ATLAS_API_ALLOWED_HOSTS. OpenAPI docs
    only with --docs.
    """

    def run() -> None:
        from pipelines.config import load_settings
        from pipelines.logs import configure
        from pipelines.serve.server import serve

        say = configure(log_format.value, debug)
        settings = load_settings()
        settings.require_atlas_file()
        serve(
            settings,
            host,
            port,
            allow_remote,
            drain_seconds,
            say,
            docs=docs,
            limit_concurrency=limit_concurrency,
        )

    _guarded(debug, run)


token_app = typer.Typer(
    help="API tokens of `serve` (stored hashed in ATLAS_API_TOKENS_FILE).",
    no_args_is_help=True,
)
app.add_typer(token_app, name="token")


@token_app.command("create")
def token_create_command(
    name: Annotated[str, typer.Argument(metavar="NAME", hidden=True, show_default=False)],
    scope: Annotated[
        list[str],
        typer.Option(
            "--scope",
            metavar="SCOPE",
            help="sync:execute, sync:read or metrics:read (repeatable).",
            show_default=False,
        ),
    ],
    debug: Debug = False,
) -> None:
    """Create a token: print it once, append its hash, name and scopes to the tokens file.

    NAME: who uses it (recorded as started_by of its runs).
    """

    def create() -> None:
        from pipelines.config import load_settings
        from pipelines.serve.tokens import create

        path = load_settings().api_tokens_file
        if path is None:
            raise ConfigError("ATLAS_API_TOKENS_FILE is not set: name the tokens file there")
        token = create(path, name, scope)
        print(token)
        print(f"token {name!r} added to {path}; it is shown only now", file=sys.stderr)

    _guarded(debug, create)


@app.command("dbt", context_settings={"allow_extra_args": True, "ignore_unknown_options": True})
def dbt_command(
    ctx: typer.Context,
    demo: Annotated[
        Path | None,
        typer.Option(
            "--demo",
            metavar="DIR",
            help="Use the DuckDB file of the demo in DIR (e.g. kimai-atlas-demo) instead of"
            " the configured Atlas DB.",
            show_default=False,
        ),
    ] = None,
    debug: Debug = False,
) -> None:
    """Run any dbt command against the configured Atlas DB, or a demo's DuckDB file.

    Everything after the options goes to dbt as it is, e.g. `dbt build --select
    vw_my_mart+`, `dbt test`, `dbt docs generate`, `dbt source freshness`. The profile
    comes from the same settings as every other command, so nothing is guessed. It runs
    in place (not through the shadow schemas), under the run lock: meant for development
    databases and the demo. Exit 0 when dbt succeeds, 1 when it does not.
    """

    def run() -> None:
        from pipelines.config import load_settings
        from pipelines.lock import run_lock
        from pipelines.transform import invoke_dbt

        if demo is not None:
            from pipelines.demo.runner import DemoPaths, demo_settings

            paths = DemoPaths(demo.resolve())
            if not paths.atlas.is_file():
                raise ConfigError(
                    f"no demo in {demo} (no {paths.atlas}): run `python -m pipelines.run demo"
                    f" --dir {demo}` first"
                )
            settings = demo_settings(paths)
            target_dir = paths.dbt
        else:
            settings = load_settings()
            # dbt's own place: ./target (manifest.json for dbt-metabase) and ./logs
            target_dir = Path.cwd()
            # dbt-duckdb would silently create an empty file and build nothing useful
            settings.require_atlas_file()
        if not ctx.args:
            raise ConfigError("no dbt command given (e.g. `build --select vw_customers+`)")
        with run_lock(settings):
            res = invoke_dbt(settings, ctx.args, target_dir)
        if not res.success:
            raise typer.Exit(EXIT_DATA_TEST_FAILED)

    _guarded(debug, run)


def main() -> None:
    """Console-script entry point."""
    app()


if __name__ == "__main__":
    main()
