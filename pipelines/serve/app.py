"""The HTTP API (FastAPI): start runs, read their audit, status, metrics and the health page.

Every run goes through `pipelines.runner.execute`, as on the command line: the run lock,
the audit (trigger ``api``, started by the token's name) and, for ``/sync``, dbt build.
Endpoints that read Atlas DB are plain functions: FastAPI runs them on its thread pool,
so a slow query never blocks the event loop. (No ``from __future__ import annotations``:
FastAPI reads the annotations of the endpoints defined inside `create_app`.)

Every request first passes `Guard`, which refuses what it can from the request line and
headers alone (Host, cross-site requests, the token and its scope, content type and size)
before a byte of the body is read; FastAPI parses a body only after that.
"""

import asyncio
import base64
import binascii
import datetime as dt
import enum
import logging
import os
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
from starlette.datastructures import Headers
from starlette.routing import BaseRoute, Match
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from pipelines.config import Settings
from pipelines.errors import ConfigError, LockHeld, PipelineError
from pipelines.registry import TABLES_BY_NAME
from pipelines.runner import RunRequest
from pipelines.serve import health_page, tokens
from pipelines.serve.worker import RunWorker
from pipelines.status import audit_metrics_text, collect, run_detail
from pipelines.types import SyncOptions

LOG = logging.getLogger("pipelines.serve")

REALM = "kimai-atlas-sync"
TRIGGER = "api"

MAX_BODY_BYTES = 8 * 1024
"""The largest request body read: the largest meaningful one (every table named) is ~150 bytes."""

DOCS_PATHS = ("/docs", "/docs/oauth2-redirect", "/redoc", "/openapi.json")

_RUN_ID = r"^[0-9a-f]{32}$"  # the audit's run ids: uuid4().hex
_TOKEN_KEY = "kimai_atlas_sync.token"  # where `Guard` leaves the caller's token in the scope

# both documented in OpenAPI; neither fails by itself, `_Auth` decides
_bearer = HTTPBearer(auto_error=False, description="Authorization: Bearer <token>")
_basic = HTTPBasic(
    auto_error=False, realm=REALM, description="Any user name, the token as password"
)


class TokensUnusable(Exception):
    """The tokens file cannot be trusted now: no token is valid until it is fixed."""


class TokenStore:
    """The tokens file, read again whenever it changes (a new token needs no restart).

    It fails closed: while the file is missing, malformed, owned by another user or
    writable by group or others, no token is valid (the old ones neither), and the
    service answers 503 until the file is fixed.
    """

    def __init__(self, path: Path) -> None:
        """Read the file once.

        Raises:
            ConfigError: The file is unusable (`tokens.load`); `serve` exits 2.

        """
        self.path = path
        self._stamp = self._stat()
        self._tokens: list[tokens.Token] = tokens.load(path)
        self._problem: str | None = None

    def _stat(self) -> tuple[int, ...] | None:
        # chmod and chown change only the ctime: the stamp has it, mode and owner too
        try:
            st = os.stat(self.path)
        except OSError:
            return None
        return (
            st.st_dev,
            st.st_ino,
            st.st_mtime_ns,
            st.st_ctime_ns,
            st.st_size,
            st.st_mode,
            st.st_uid,
        )

    def current(self) -> list[tokens.Token]:
        """The tokens now in the file.

        Raises:
            TokensUnusable: The file is missing or fails `tokens.load`'s checks.

        """
        stamp = self._stat()
        if stamp != self._stamp:
            self._stamp = stamp
            try:
                self._tokens = tokens.load(self.path)
            except ConfigError as exc:
                self._tokens, self._problem = [], str(exc)
                LOG.error("refusing every token until the tokens file is fixed: %s", exc)
            else:
                if self._problem is not None:
                    LOG.warning("the tokens file is usable again: %d token(s)", len(self._tokens))
                self._problem = None
        if self._problem is not None:
            raise TokensUnusable(self._problem)
        return self._tokens


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


class _Auth:
    """A dependency: the caller's token, which must hold `scope`.

    `Guard` has already checked the token and this scope before the body was read (it
    finds the scope here, on the route); this reads the token it left, and names the
    schemes in OpenAPI.
    """

    def __init__(self, scope: str) -> None:
        self.scope = scope

    def __call__(
        self,
        request: Request,
        bearer: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)],
        basic: Annotated[HTTPBasicCredentials | None, Depends(_basic)],
    ) -> tokens.Token:
        del bearer, basic  # declared for OpenAPI's security schemes; `Guard` read them
        token = request.scope.get(_TOKEN_KEY)
        # unreachable behind `Guard`; refuse anyway rather than trust a missing check
        if not isinstance(token, tokens.Token) or self.scope not in token.scopes:
            raise HTTPException(403, f"the token lacks the {self.scope} scope")
        return token


def _same_origin(headers: Headers) -> None:
    """Refuse a POST another web site makes a browser send with its saved Basic login."""
    origin = headers.get("origin")
    if origin and urlsplit(origin).netloc != headers.get("host"):
        raise _Refused(403, "cross-site request refused")


class _Refused(Exception):
    """A request `Guard` answers itself."""

    def __init__(self, status: int, detail: str, headers: dict[str, str] | None = None) -> None:
        super().__init__(detail)
        self.status = status
        self.detail = detail
        self.headers = headers or {}


def host_name(header: str | None) -> str | None:
    """The host of a ``Host`` header, lower case, without port or IPv6 brackets."""
    if not header:
        return None
    header = header.strip().lower()
    if header.startswith("["):
        end = header.find("]")
        return header[1:end] if end > 0 else None
    return header.rsplit(":", 1)[0].removesuffix(".") if header.count(":") <= 1 else None


def _presented(headers: Headers) -> str | None:
    """The token of an ``Authorization`` header: Bearer, or Basic's password."""
    scheme, _, value = (headers.get("authorization") or "").partition(" ")
    value = value.strip()
    if scheme.lower() == "bearer":
        return value or None
    if scheme.lower() == "basic":
        try:
            pair = base64.b64decode(value, validate=True).decode("utf-8")
        except (binascii.Error, UnicodeDecodeError):
            return None
        return pair.partition(":")[2] or None
    return None


def _has_body(headers: Headers) -> bool:
    return "transfer-encoding" in headers or headers.get("content-length", "0") != "0"


def _needs_scope(route: BaseRoute) -> str | None:
    """The scope a route's endpoint demands (its `_Auth` dependency), if any."""
    dependant = getattr(route, "dependant", None)
    for dependency in dependant.dependencies if dependant is not None else ():
        if isinstance(dependency.call, _Auth):
            return dependency.call.scope
    return None


class Guard:
    """ASGI middleware: every check that needs no body, done before the body is read.

    In order: the ``Host`` header (400), a cross-site request (403), the token (401, or 503
    while the tokens file is unusable) and the route's scope (403), a POST's ``Origin``
    (403) and content type (415), then the body's size (413). Only then does the request
    reach FastAPI, with its body already read (at most `MAX_BODY_BYTES`). A path that is
    not public needs a valid token even when it does not exist: nobody learns the routes
    without one.
    """

    def __init__(
        self,
        app: ASGIApp,
        store: TokenStore,
        routes: list[BaseRoute],
        public: frozenset[str],
        allowed_hosts: frozenset[str],
    ) -> None:
        self.app = app
        self.store = store
        self.routes = routes
        self.public = public
        self.allowed_hosts = allowed_hosts

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Answer a refused request; pass the others on with their (capped) body."""
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = Headers(scope=scope)
        has_body = _has_body(headers)
        try:
            self._check(scope, headers, has_body)
            if has_body:
                body = await _read_body(receive)
                receive = _replay(body, receive)
        except _Refused as refused:
            extra = dict(refused.headers)
            if has_body:
                # the body was not (all) read: close rather than read the rest
                extra["Connection"] = "close"
            answer = JSONResponse({"detail": refused.detail}, refused.status, extra)
            await answer(scope, receive, send)
            return
        await self.app(scope, receive, send)

    def _check(self, scope: Scope, headers: Headers, has_body: bool) -> None:
        if host_name(headers.get("host")) not in self.allowed_hosts:
            # a DNS-rebinding page or a spoofed name: nothing here is meant for it
            raise _Refused(400, "the Host header names none of the service's host names")
        if headers.get("sec-fetch-site") == "cross-site" and not (
            scope["method"] in ("GET", "HEAD") and headers.get("sec-fetch-mode") == "navigate"
        ):
            # only following a link from elsewhere is let through: it reads, and shows the
            # answer to the user, not to the linking page
            raise _Refused(403, "cross-site request refused")
        if scope["path"] not in self.public:
            self._authenticate(scope, headers)
        if scope["method"] not in ("GET", "HEAD", "OPTIONS"):
            _same_origin(headers)
            media = (headers.get("content-type") or "").split(";", 1)[0].strip().lower()
            # an HTML form can send only form, multipart or text content: never JSON
            if media != "application/json" and (media or has_body):
                raise _Refused(415, "a request body must be JSON (Content-Type: application/json)")
        length = headers.get("content-length")
        if length is not None and not length.isdigit():
            raise _Refused(400, "a malformed Content-Length")
        if length is not None and int(length) > MAX_BODY_BYTES:
            raise _Refused(413, f"the body is larger than {MAX_BODY_BYTES} bytes")

    def _authenticate(self, scope: Scope, headers: Headers) -> None:
        route = next((r for r in self.routes if r.matches(scope)[0] == Match.FULL), None)
        presented = _presented(headers)
        token = None
        if presented:
            try:
                token = tokens.find(self.store.current(), presented)
            except TokensUnusable:
                raise _Refused(
                    503,
                    "no token is valid now: the service's tokens file is unusable (its log"
                    " says why)",
                ) from None
        if token is None:
            # never the presented value: tokens stay out of logs and answers
            raise _Refused(
                401,
                "a valid token is needed: Authorization: Bearer <token>, or Basic with the"
                " token as password",
                {"WWW-Authenticate": f'Basic realm="{REALM}", charset="UTF-8"'},
            )
        needed = _needs_scope(route) if route is not None else None
        if needed is not None and needed not in token.scopes:
            raise _Refused(403, f"token {token.name!r} lacks the {needed} scope")
        scope[_TOKEN_KEY] = token


async def _read_body(receive: Receive) -> bytes:
    """The whole body, or `_Refused` (413) as soon as it passes `MAX_BODY_BYTES`.

    A chunked body has no Content-Length to check first: it is counted as it arrives.
    """
    chunks: list[bytes] = []
    size = 0
    while True:
        message = await receive()
        if message["type"] != "http.request":  # the client went away
            break
        chunk = message.get("body", b"")
        size += len(chunk)
        if size > MAX_BODY_BYTES:
            raise _Refused(413, f"the body is larger than {MAX_BODY_BYTES} bytes")
        chunks.append(chunk)
        if not message.get("more_body", False):
            break
    return b"".join(chunks)


def _replay(body: bytes, receive: Receive) -> Receive:
    """A `receive` that hands the body read by `Guard` to the app, then waits as before."""
    sent = False

    async def replay() -> Message:
        nonlocal sent
        if sent:
            return await receive()  # e.g. http.disconnect
        sent = True
        return {"type": "http.request", "body": body, "more_body": False}

    return replay


class _ParsedText(Collector):
    """Re-exposes the textfile's metrics: the same names and values, one source for both."""

    def __init__(self, text: str) -> None:
        self.text = text

    def collect(self) -> Iterator[Any]:
        yield from text_string_to_metric_families(self.text)


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


def create_app(
    settings: Settings,
    store: TokenStore,
    worker: RunWorker,
    drain_seconds: float = 600.0,
    allowed_hosts: frozenset[str] = frozenset({"127.0.0.1", "localhost", "::1"}),
    docs: bool = False,
) -> FastAPI:
    """The application.

    Args:
        settings: Runtime settings.
        store: The API tokens.
        worker: Executes the runs, one at a time.
        drain_seconds: On shutdown, how long to wait for a running run to end.
        allowed_hosts: The names a request's ``Host`` header may give (no port).
        docs: Serve the OpenAPI schema and its pages (/openapi.json, /docs, /redoc),
            without a token.

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
        docs_url="/docs" if docs else None,
        redoc_url="/redoc" if docs else None,
        openapi_url="/openapi.json" if docs else None,
        # `/sync/` would answer with a redirect built from the request's Host header
        redirect_slashes=False,
    )
    public = {"/healthz", *(DOCS_PATHS if docs else ())}
    app.add_middleware(
        Guard,
        store=store,
        routes=app.router.routes,
        public=frozenset(public),
        allowed_hosts=allowed_hosts,
    )

    @app.exception_handler(PipelineError)
    async def pipeline_error(_request: Request, exc: PipelineError) -> JSONResponse:
        # e.g. Atlas DB unreachable: the message names its user, host, port and database,
        # so it goes to the log only
        LOG.error("%s", exc)
        return JSONResponse(
            {"detail": "Atlas DB could not be read (the service's log says why)"},
            status_code=503,
        )

    @app.exception_handler(Exception)
    async def unexpected(_request: Request, exc: Exception) -> JSONResponse:
        # uvicorn logs the traceback; the caller learns nothing of the internals
        return JSONResponse(
            {"detail": "internal error (the service's log says more)"}, status_code=500
        )

    execute_scope = _Auth("sync:execute")
    read_scope = _Auth("sync:read")
    metrics_scope = _Auth("metrics:read")
    Execute = Annotated[tokens.Token, Depends(execute_scope)]
    Read = Annotated[tokens.Token, Depends(read_scope)]
    answers = _answers(400, 401, 403, 503)
    start_answers = _answers(400, 401, 403, 409, 413, 415, 503)

    async def start(make: Callable[[], RunRequest]) -> JSONResponse:
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

    def names(tables: list[TableName] | None) -> list[str] | None:  # type: ignore[valid-type]
        return [str(t) for t in tables] if tables is not None else None

    @app.post("/sync", status_code=202, response_model=Started, responses=start_answers)
    async def sync_all(token: Execute, body: SyncBody | None = None) -> JSONResponse:
        """Sync the tables (all when none are given), then dbt build: the scheduled job."""
        body = body or SyncBody()
        return await start(lambda: sync_request(token, names(body.tables), body))

    @app.post(
        "/sync/{table}",
        status_code=202,
        response_model=Started,
        responses={**start_answers, **_answers(404, e404="No such table")},
    )
    async def sync_table(
        token: Execute,
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
        return await start(lambda: sync_request(token, [table], body))

    @app.post("/reconcile", status_code=202, response_model=Started, responses=start_answers)
    async def reconcile(token: Execute, body: ReconcileBody | None = None) -> JSONResponse:
        """Compare every column of every row with Kimai and repair: the `reconcile` command."""
        body = body or ReconcileBody()
        return await start(
            lambda: RunRequest(
                command="reconcile",
                tables=names(body.tables),
                options=SyncOptions(overlap_seconds=settings.overlap_seconds, reconcile=True),
                trigger=TRIGGER,
                started_by=token.name,
            )
        )

    @app.get("/runs/{run_id}", responses={**answers, **_answers(404, e404="No such run")})
    def run(
        _token: Read,
        run_id: Annotated[
            str, PathParam(pattern=_RUN_ID, description="32 hex digits, as POST answered")
        ],
    ) -> JSONResponse:
        """A run's audit record: status, exit code, start and end, per-table counts, error."""
        detail = run_detail(settings, run_id)
        if detail is None:
            raise HTTPException(404, f"no run {run_id} in the audit")
        return JSONResponse(jsonable_encoder(detail))

    @app.get("/status", responses=answers)
    def status(
        _token: Read,
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

    @app.get("/metrics", response_class=Response, responses=answers)
    def metrics(_token: Annotated[tokens.Token, Depends(metrics_scope)]) -> Response:
        """Prometheus exposition, with the metric names of the textfile (`--metrics-file`)."""
        registry = CollectorRegistry(auto_describe=False)
        registry.register(_ParsedText(audit_metrics_text(settings)))
        return Response(generate_latest(registry), media_type=CONTENT_TYPE_LATEST)

    @app.get("/healthz", responses=_answers(400, 403))
    async def healthz() -> dict[str, bool]:
        """Liveness: the service answers (no database is touched)."""
        return {"ok": True}

    @app.get("/", response_class=HTMLResponse, responses=answers)
    def page(token: Read) -> HTMLResponse:
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

    return app
