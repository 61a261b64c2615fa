"""The HTTP API (FastAPI): start runs, read their audit, status, metrics and the health page.

Every run goes through `pipelines.runner.execute`, as on the command line: the run lock,
the audit (trigger ``api``, started by the token's name) and, for ``/sync``, dbt build.
Endpoints that read Atlas DB are plain functions: FastAPI runs them on its thread pool,
so a slow query never blocks the event loop. (No ``from __future__ import annotations``:
FastAPI reads the annotations of the endpoints defined inside `create_app`.)
"""

import asyncio
import datetime as dt
import logging
import secrets
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Annotated, Any
from urllib.parse import urlsplit

from fastapi import Depends, FastAPI, HTTPException, Query, Request
from fastapi import Path as PathParam
from fastapi.encoders import jsonable_encoder
from fastapi.responses import HTMLResponse, JSONResponse, Response
from fastapi.security import (
    HTTPAuthorizationCredentials,
    HTTPBasic,
    HTTPBasicCredentials,
    HTTPBearer,
)
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest
from prometheus_client.parser import text_string_to_metric_families
from prometheus_client.registry import Collector
from pydantic import BaseModel, ConfigDict

from pipelines import healthpage, tokens
from pipelines.config import Settings
from pipelines.errors import ConfigError, LockHeld, PipelineError
from pipelines.registry import TABLES_BY_NAME
from pipelines.runner import RunRequest
from pipelines.status import audit_metrics_text, collect, run_detail
from pipelines.types import SyncOptions
from pipelines.worker import RunWorker

LOG = logging.getLogger("pipelines.serve")

REALM = "kimai-atlas-sync"
TRIGGER = "api"

# both documented in OpenAPI; neither fails by itself, `_Auth` decides
_bearer = HTTPBearer(auto_error=False, description="Authorization: Bearer <token>")
_basic = HTTPBasic(
    auto_error=False, realm=REALM, description="Any user name, the token as password"
)


class TokenStore:
    """The tokens file, read again when it changes (a new token needs no restart)."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._stamp = self._stat()
        self._tokens = tokens.load(path)

    def _stat(self) -> tuple[int, int]:
        try:
            st = self.path.stat()
        except OSError:
            return (0, 0)
        return (st.st_mtime_ns, st.st_size)

    def current(self) -> list[tokens.Token]:
        """The tokens now in the file; the last good ones while it is unreadable."""
        stamp = self._stat()
        if stamp != self._stamp:
            try:
                self._tokens = tokens.load(self.path)
            except ConfigError as exc:
                LOG.error("keeping the previous tokens: %s", exc)
            self._stamp = stamp
        return self._tokens


class SyncBody(BaseModel):
    """Options of ``POST /sync`` (all optional)."""

    model_config = ConfigDict(extra="forbid")
    tables: list[str] | None = None
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
    tables: list[str] | None = None


class Started(BaseModel):
    """A run was started: read its record at ``/runs/{run_id}``."""

    run_id: str


class _Auth:
    """A dependency: the caller's token, which must hold `scope`."""

    def __init__(self, store: TokenStore, scope: str) -> None:
        self.store = store
        self.scope = scope

    def __call__(
        self,
        request: Request,
        bearer: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)],
        basic: Annotated[HTTPBasicCredentials | None, Depends(_basic)],
    ) -> tokens.Token:
        presented = bearer.credentials if bearer else basic.password if basic else None
        token = tokens.find(self.store.current(), presented) if presented else None
        if token is None:
            # never the presented value: tokens stay out of logs and answers
            raise HTTPException(
                401,
                "a valid token is needed: Authorization: Bearer <token>, or Basic with the"
                " token as password",
                headers={"WWW-Authenticate": f'Basic realm="{REALM}", charset="UTF-8"'},
            )
        if self.scope not in token.scopes:
            raise HTTPException(403, f"token {token.name!r} lacks the {self.scope} scope")
        if request.method == "POST":
            _same_origin(request)
        return token


def _same_origin(request: Request) -> None:
    """Refuse a POST another web site makes a browser send with its saved Basic login."""
    origin = request.headers.get("origin")
    if origin and urlsplit(origin).netloc != request.headers.get("host"):
        raise HTTPException(403, "cross-site request refused")


class _ParsedText(Collector):
    """Re-exposes the textfile's metrics: the same names and values, one source for both."""

    def __init__(self, text: str) -> None:
        self.text = text

    def collect(self) -> Iterator[Any]:
        yield from text_string_to_metric_families(self.text)


def create_app(
    settings: Settings,
    store: TokenStore,
    worker: RunWorker,
    drain_seconds: float = 600.0,
) -> FastAPI:
    """The application.

    Args:
        settings: Runtime settings.
        store: The API tokens.
        worker: Executes the runs, one at a time.
        drain_seconds: On shutdown, how long to wait for a running run to end.

    """

    @asynccontextmanager
    async def lifespan(_app: FastAPI) -> AsyncIterator[None]:
        yield
        # uvicorn has stopped accepting connections: let a running run finish
        current = worker.current
        if current is not None:
            LOG.warning(
                "shutting down: waiting up to %.0f s for run %s", drain_seconds, current.run_id
            )
            if await asyncio.to_thread(worker.wait_idle, drain_seconds):
                LOG.warning("run %s ended; exiting", current.run_id)
            else:
                LOG.error(
                    "run %s still going after %.0f s; exiting: the next run marks it crashed"
                    " and repairs what it left",
                    current.run_id,
                    drain_seconds,
                )

    app = FastAPI(
        title="Kimai → Atlas DB sync",
        summary="Start syncs and reconciles, read their audit, status and metrics.",
        version="1",
        lifespan=lifespan,
    )

    @app.exception_handler(PipelineError)
    async def pipeline_error(_request: Request, exc: PipelineError) -> JSONResponse:
        # e.g. Atlas DB unreachable: its one line, as the command line prints it
        return JSONResponse({"detail": str(exc)}, status_code=503)

    execute_scope = _Auth(store, "sync:execute")
    read_scope = _Auth(store, "sync:read")
    metrics_scope = _Auth(store, "metrics:read")
    Execute = Annotated[tokens.Token, Depends(execute_scope)]
    Read = Annotated[tokens.Token, Depends(read_scope)]
    answers = {
        401: {"description": "No token, or a wrong one"},
        403: {"description": "The token lacks the scope"},
    }
    start_answers = {
        **answers,
        409: {"description": "Another run holds the lock (the answer names it)"},
        503: {"description": "The run could not start (e.g. Atlas DB unreachable)"},
    }

    async def start(make: Callable[[], RunRequest]) -> JSONResponse:
        try:
            started = worker.submit(make())
        except LockHeld:  # a run of this service: name it once it has its run id
            return JSONResponse({"detail": await asyncio.to_thread(worker.holder)}, 409)
        try:
            run_id = await asyncio.wrap_future(started)
        except LockHeld as exc:  # a run elsewhere (the scheduled job): the lock names it
            return JSONResponse({"detail": str(exc)}, status_code=409)
        except PipelineError as exc:
            return JSONResponse({"detail": str(exc)}, status_code=503)
        return JSONResponse(
            {"run_id": run_id}, status_code=202, headers={"Location": f"/runs/{run_id}"}
        )

    def sync_request(token: tokens.Token, tables: list[str] | None, body: Any) -> RunRequest:
        # what the scheduled job does, for these tables: sync, then dbt build
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

    def check_tables(tables: list[str] | None) -> None:
        unknown = [t for t in tables or () if t not in TABLES_BY_NAME]
        if unknown:
            raise HTTPException(
                422,
                f"unknown table {', '.join(unknown)} (known: {', '.join(TABLES_BY_NAME)})",
            )

    @app.post("/sync", status_code=202, response_model=Started, responses=start_answers)
    async def sync_all(token: Execute, body: SyncBody | None = None) -> JSONResponse:
        """Sync the tables (all when none are given), then dbt build: the scheduled job."""
        body = body or SyncBody()
        check_tables(body.tables)
        return await start(lambda: sync_request(token, body.tables, body))

    @app.post(
        "/sync/{table}",
        status_code=202,
        response_model=Started,
        responses={**start_answers, 404: {"description": "No such table"}},
    )
    async def sync_table(
        token: Execute,
        table: Annotated[str, PathParam(description=f"One of: {', '.join(TABLES_BY_NAME)}")],
        body: TableSyncBody | None = None,
    ) -> JSONResponse:
        """Sync one table, then dbt build."""
        if table not in TABLES_BY_NAME:
            raise HTTPException(404, f"no table {table!r} (known: {', '.join(TABLES_BY_NAME)})")
        body = body or TableSyncBody()
        return await start(lambda: sync_request(token, [table], body))

    @app.post("/reconcile", status_code=202, response_model=Started, responses=start_answers)
    async def reconcile(token: Execute, body: ReconcileBody | None = None) -> JSONResponse:
        """Compare every column of every row with Kimai and repair: the `reconcile` command."""
        body = body or ReconcileBody()
        check_tables(body.tables)
        return await start(
            lambda: RunRequest(
                command="reconcile",
                tables=body.tables,
                options=SyncOptions(overlap_seconds=settings.overlap_seconds, reconcile=True),
                trigger=TRIGGER,
                started_by=token.name,
            )
        )

    @app.get("/runs/{run_id}", responses={**answers, 404: {"description": "No such run"}})
    def run(_token: Read, run_id: str) -> JSONResponse:
        """A run's audit record: status, exit code, start and end, per-table counts, error."""
        detail = run_detail(settings, run_id)
        if detail is None:
            raise HTTPException(404, f"no run {run_id!r} in the audit")
        return JSONResponse(jsonable_encoder(detail))

    @app.get("/status", responses=answers)
    def status(
        _token: Read,
        runs: Annotated[int, Query(ge=1, description="How many recent runs to list")] = 10,
        max_lag: Annotated[
            float, Query(ge=0, description="Minutes after which a table is stale")
        ] = 60.0,
    ) -> JSONResponse:
        """The same JSON as `status --json`."""
        found = collect(settings, last_runs=runs, max_lag_seconds=max_lag * 60)
        return JSONResponse(jsonable_encoder(found.as_json()))

    @app.get("/metrics", response_class=Response, responses=answers)
    def metrics(_token: Annotated[tokens.Token, Depends(metrics_scope)]) -> Response:
        """Prometheus exposition, with the metric names of the textfile (`--metrics-file`)."""
        registry = CollectorRegistry(auto_describe=False)
        registry.register(_ParsedText(audit_metrics_text(settings)))
        return Response(generate_latest(registry), media_type=CONTENT_TYPE_LATEST)

    @app.get("/healthz")
    async def healthz() -> dict[str, bool]:
        """Liveness: the service answers (no database is touched)."""
        return {"ok": True}

    @app.get("/", response_class=HTMLResponse, responses=answers)
    def page(token: Read) -> HTMLResponse:
        """The health page (HTML)."""
        nonce = secrets.token_urlsafe(16)
        html = healthpage.render(
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

    return app
