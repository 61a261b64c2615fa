"""The endpoints: start runs, read their audit, status, metrics and the health page.

Every run goes through `pipelines.runner.execute`, as on the command line: the run lock,
the audit (trigger ``api``, started by the token's name) and, for ``/sync``, dbt build.
Endpoints that read Atlas DB are plain functions: FastAPI runs them on its thread pool,
so a slow query never blocks the event loop.

What an endpoint needs comes as a dependency: the caller's token holding the route's scope
(`auth.RequireScope`, which `guard.Guard` also reads to refuse a request before its body),
and the settings and run worker `app.create_app` keeps in the application's state. (No
``from __future__ import annotations``: FastAPI reads the endpoints' annotations.)
"""

import asyncio
import datetime as dt
import enum
import logging
import secrets
from collections.abc import Callable
from typing import Annotated, Any

from fastapi import APIRouter, Depends, HTTPException, Query, Request
from fastapi import Path as PathParam
from fastapi.encoders import jsonable_encoder
from fastapi.responses import HTMLResponse, JSONResponse, Response
from prometheus_client import CONTENT_TYPE_LATEST
from pydantic import BaseModel, ConfigDict

from pipelines.config import Settings
from pipelines.errors import LockHeld, PipelineError
from pipelines.record import metrics as product_metrics
from pipelines.record.status import collect, run_detail
from pipelines.registry import TABLES_BY_NAME
from pipelines.runner import RunRequest
from pipelines.serve import health_page, tokens
from pipelines.serve.auth import RequireScope
from pipelines.serve.guard import MAX_BODY_BYTES
from pipelines.serve.worker import RunWorker
from pipelines.types import SyncOptions

LOG = logging.getLogger("pipelines.serve")

TRIGGER = "api"

_RUN_ID = r"^[0-9a-f]{32}$"  # the audit's run ids: uuid4().hex


def app_settings(request: Request) -> Settings:
    """The service's settings, from the application's state."""
    return request.app.state.settings


def app_worker(request: Request) -> RunWorker:
    """The service's run worker, from the application's state."""
    return request.app.state.worker


AppSettings = Annotated[Settings, Depends(app_settings)]
Worker = Annotated[RunWorker, Depends(app_worker)]
Execute = Annotated[tokens.Token, Depends(RequireScope("sync:execute"))]
Read = Annotated[tokens.Token, Depends(RequireScope("sync:read"))]
Scrape = Annotated[tokens.Token, Depends(RequireScope("metrics:read"))]


class Problem(BaseModel):
    """Why a request was refused or failed (never a token, a password or a database address)."""

    detail: str


TableName = enum.StrEnum("TableName", {name: name for name in TABLES_BY_NAME})  # type: ignore[misc]
"""A table's short name, as the command line takes it."""


class SyncBody(BaseModel):
    """Options of ``POST /sync`` (all optional)."""

    model_config = ConfigDict(extra="forbid")
    tables: list[TableName] | None = None  # type: ignore[valid-type]
    """Short table names; every table when omitted."""
    full_refresh: bool = False
    """Re-read every row from Kimai and rewrite the replica."""
    since: dt.date | None = None
    """Also re-read timesheets whose local day is on or after this date."""


class TableSyncBody(BaseModel):
    """Options of ``POST /sync/{table}`` (all optional)."""

    model_config = ConfigDict(extra="forbid")
    full_refresh: bool = False
    since: dt.date | None = None


class ReconcileBody(BaseModel):
    """Options of ``POST /reconcile`` (all optional)."""

    model_config = ConfigDict(extra="forbid")
    tables: list[TableName] | None = None  # type: ignore[valid-type]
    """Short table names; every table when omitted."""


class Started(BaseModel):
    """A run was started: read its record at ``/runs/{run_id}``."""

    run_id: str


_WHY = {
    400: "The Host header names none of the service's host names",
    401: "No token, or a wrong one",
    403: "The token lacks the scope, or the request comes from another site",
    404: "Not found",
    409: "Another run holds the lock (the answer names it)",
    413: f"The body is larger than {MAX_BODY_BYTES} bytes",
    415: "A body that is not JSON (Content-Type: application/json)",
    503: "The tokens file is unusable, or Atlas DB could not be read or the run not started"
    " (the service's log says why)",
}


def _answers(*codes: int, **why: str) -> dict[int | str, dict[str, Any]]:
    """OpenAPI's answers for `codes` besides success (FastAPI adds its own 422)."""
    return {
        code: {"model": Problem, "description": why.get(f"e{code}", _WHY[code])} for code in codes
    }


ANSWERS = _answers(400, 401, 403, 503)
START_ANSWERS = _answers(400, 401, 403, 409, 413, 415, 503)

router = APIRouter()


async def _start(worker: RunWorker, make: Callable[[], RunRequest]) -> JSONResponse:
    """Hand a run to the worker; 202 with its id once its audit row exists, else why not."""
    try:
        started = worker.submit(make())
    except LockHeld:  # a run of this service: name it once it has its run id
        return JSONResponse({"detail": await asyncio.to_thread(worker.holder)}, 409)
    try:
        run_id = await asyncio.wrap_future(started)
    except LockHeld as exc:  # a run elsewhere (the scheduled job): the lock names it
        # without its database role and address: only the log shows those
        LOG.warning("%s", exc)
        return JSONResponse({"detail": exc.public}, status_code=409)
    except PipelineError as exc:
        # the message may name Atlas's user, host, port and database: the log has it
        LOG.error("a run could not start: %s", exc)
        return JSONResponse(
            {"detail": "the run could not start (the service's log says why)"},
            status_code=503,
        )
    return JSONResponse(
        {"run_id": run_id}, status_code=202, headers={"Location": f"/runs/{run_id}"}
    )


def _sync_request(
    settings: Settings,
    token: tokens.Token,
    tables: list[str] | None,
    body: SyncBody | TableSyncBody,
) -> RunRequest:
    """What the scheduled job does, for these tables: sync, then dbt build."""
    return RunRequest(
        command="run",
        transform=True,
        tables=tables,
        options=SyncOptions(
            full_refresh=body.full_refresh,
            since=body.since,
            overlap_seconds=settings.overlap_seconds,
            reconcile=settings.reconcile_every_run,
        ),
        trigger=TRIGGER,
        started_by=token.name,
    )


def _names(tables: list[TableName] | None) -> list[str] | None:  # type: ignore[valid-type]
    return [str(t) for t in tables] if tables is not None else None


@router.post("/sync", status_code=202, response_model=Started, responses=START_ANSWERS)
async def sync_all(
    token: Execute, settings: AppSettings, worker: Worker, body: SyncBody | None = None
) -> JSONResponse:
    """Sync the tables (all when none are given), then dbt build: the scheduled job."""
    body = body or SyncBody()
    return await _start(worker, lambda: _sync_request(settings, token, _names(body.tables), body))


@router.post(
    "/sync/{table}",
    status_code=202,
    response_model=Started,
    responses={**START_ANSWERS, **_answers(404, e404="No such table")},
)
async def sync_table(
    token: Execute,
    settings: AppSettings,
    worker: Worker,
    table: Annotated[
        str,
        PathParam(
            description=f"One of: {', '.join(TABLES_BY_NAME)}",
            openapi_examples={"timesheets": {"value": "timesheets"}},
        ),
    ],
    body: TableSyncBody | None = None,
) -> JSONResponse:
    """Sync one table, then dbt build."""
    if table not in TABLES_BY_NAME:
        raise HTTPException(404, f"no table {table!r} (known: {', '.join(TABLES_BY_NAME)})")
    body = body or TableSyncBody()
    return await _start(worker, lambda: _sync_request(settings, token, [table], body))


@router.post("/reconcile", status_code=202, response_model=Started, responses=START_ANSWERS)
async def reconcile(
    token: Execute, settings: AppSettings, worker: Worker, body: ReconcileBody | None = None
) -> JSONResponse:
    """Compare every column of every row with Kimai and repair: the `reconcile` command."""
    body = body or ReconcileBody()
    return await _start(
        worker,
        lambda: RunRequest(
            command="reconcile",
            tables=_names(body.tables),
            options=SyncOptions(overlap_seconds=settings.overlap_seconds, reconcile=True),
            trigger=TRIGGER,
            started_by=token.name,
        ),
    )


@router.get("/runs/{run_id}", responses={**ANSWERS, **_answers(404, e404="No such run")})
def run(
    _token: Read,
    settings: AppSettings,
    run_id: Annotated[
        str, PathParam(pattern=_RUN_ID, description="32 hex digits, as POST answered")
    ],
) -> JSONResponse:
    """A run's audit record: status, exit code, start and end, per-table counts, error."""
    detail = run_detail(settings, run_id)
    if detail is None:
        raise HTTPException(404, f"no run {run_id} in the audit")
    return JSONResponse(jsonable_encoder(detail))


@router.get("/status", responses=ANSWERS)
def status(
    _token: Read,
    settings: AppSettings,
    runs: Annotated[int, Query(ge=1, le=1000, description="How many recent runs to list")] = 10,
    max_lag: Annotated[
        float,
        Query(
            ge=0,
            le=525_600,
            allow_inf_nan=False,
            description="Minutes after which a table is stale (at most a year)",
        ),
    ] = 60.0,
) -> JSONResponse:
    """The same JSON as `status --json`."""
    found = collect(settings, last_runs=runs, max_lag_seconds=max_lag * 60)
    return JSONResponse(jsonable_encoder(found.as_json()))


@router.get("/metrics", response_class=Response, responses=ANSWERS)
def metrics(_token: Scrape, settings: AppSettings) -> Response:
    """Prometheus exposition, with the metric names of the textfile (`--metrics-file`)."""
    body = product_metrics.exposition(product_metrics.from_audit(settings))
    return Response(body, media_type=CONTENT_TYPE_LATEST)


@router.get("/healthz", responses=_answers(400, 403))
async def healthz() -> dict[str, bool]:
    """Liveness: the service answers (no database is touched)."""
    return {"ok": True}


@router.get("/", response_class=HTMLResponse, responses=ANSWERS)
def page(token: Read, settings: AppSettings) -> HTMLResponse:
    """The health page (HTML)."""
    nonce = secrets.token_urlsafe(16)
    html = health_page.render(
        collect(settings, last_runs=50),
        token.name,
        can_execute="sync:execute" in token.scopes,
        nonce=nonce,
    )
    policy = (
        f"default-src 'none'; style-src 'nonce-{nonce}'; script-src 'nonce-{nonce}';"
        " connect-src 'self'; img-src 'self' data:; form-action 'none';"
        " frame-ancestors 'none'"
    )
    return HTMLResponse(
        html, headers={"Content-Security-Policy": policy, "Cache-Control": "no-store"}
    )
