"""The HTTP API (FastAPI): the application that puts the service's parts together.

Every request first passes `guard.Guard`, which refuses what it can from the request line
and headers alone (Host, cross-site requests, the token and its scope, content type and
size) before a byte of the body is read; the endpoints (`routes`) get their token, settings
and run worker as dependencies. Errors answer without internals; on shutdown the
application waits for a running run.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse

from pipelines.config import Settings
from pipelines.errors import PipelineError
from pipelines.serve import routes
from pipelines.serve.auth import TokenStore
from pipelines.serve.guard import Guard
from pipelines.serve.worker import RunWorker

LOG = logging.getLogger("pipelines.serve")

DOCS_PATHS = ("/docs", "/docs/oauth2-redirect", "/redoc", "/openapi.json")


@asynccontextmanager
async def _lifespan(app: FastAPI) -> AsyncIterator[None]:
    yield
    # uvicorn has stopped accepting connections: let a running run finish
    worker: RunWorker = app.state.worker
    drain_seconds: float = app.state.drain_seconds
    current = worker.current
    if current is None:
        return
    LOG.warning("shutting down: waiting up to %.0f s for run %s", drain_seconds, current.run_id)
    if await asyncio.to_thread(worker.wait_idle, drain_seconds):
        LOG.warning("run %s ended; exiting", current.run_id)
    else:
        LOG.error(
            "run %s still going after %.0f s; exiting: the next run marks it crashed"
            " and repairs what it left",
            current.run_id,
            drain_seconds,
        )


async def _pipeline_error(_request: Request, exc: Exception) -> JSONResponse:
    # e.g. Atlas DB unreachable: the message names its user, host, port and database,
    # so it goes to the log only
    LOG.error("%s", exc)
    return JSONResponse(
        {"detail": "Atlas DB could not be read (the service's log says why)"},
        status_code=503,
    )


async def _unexpected(_request: Request, _exc: Exception) -> JSONResponse:
    # uvicorn logs the traceback; the caller learns nothing of the internals
    return JSONResponse({"detail": "internal error (the service's log says more)"}, 500)


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
    app = FastAPI(
        title="Kimai → Atlas DB sync",
        summary="Start syncs and reconciles, read their audit, status and metrics.",
        version="1",
        lifespan=_lifespan,
        docs_url="/docs" if docs else None,
        redoc_url="/redoc" if docs else None,
        openapi_url="/openapi.json" if docs else None,
        # `/sync/` would answer with a redirect built from the request's Host header
        redirect_slashes=False,
    )
    # what the endpoints' dependencies (`routes.app_settings`, `routes.app_worker`) read
    app.state.settings = settings
    app.state.worker = worker
    app.state.drain_seconds = drain_seconds
    app.include_router(routes.router)
    app.add_middleware(
        Guard,
        store=store,
        # the router's own routes, which carry the endpoints' dependencies (the scopes):
        # FastAPI may list an included router as one opaque route of the application
        routes=routes.router.routes,
        public=frozenset({"/healthz", *(DOCS_PATHS if docs else ())}),
        allowed_hosts=allowed_hosts,
    )
    app.add_exception_handler(PipelineError, _pipeline_error)
    app.add_exception_handler(Exception, _unexpected)
    return app
