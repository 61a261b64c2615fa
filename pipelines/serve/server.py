"""The ``serve`` command: checks before listening, then uvicorn until SIGTERM.

On SIGTERM (or Ctrl-C) uvicorn stops accepting connections, finishes the answers under
way, and the application's shutdown waits for a running run (`pipelines.serve.app.create_app`).
"""

from __future__ import annotations

import ipaddress
from collections.abc import Callable
from typing import TYPE_CHECKING

from pipelines.errors import ConfigError

if TYPE_CHECKING:  # the command line imports this module; settings load only when serving
    from pipelines.config import Settings


def is_loopback(host: str) -> bool:
    """Whether binding `host` keeps the service on this machine."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False  # a host name: it may resolve to any interface


LOOPBACK_NAMES = frozenset({"localhost", "127.0.0.1", "::1"})
"""Always allowed in the Host header: a DNS-rebinding page sends its own name, never these."""

LIMIT_CONCURRENCY = 32
"""Default of ``serve --limit-concurrency``: open connections before uvicorn answers 503."""


def allowed_hosts(host: str, extra: tuple[str, ...]) -> frozenset[str]:
    """The names the service answers to: loopback, the address it binds, and `extra`.

    A wildcard bind (``0.0.0.0``, ``::``) names no host: behind a proxy, list the names
    clients use in ATLAS_API_ALLOWED_HOSTS.
    """
    names = set(LOOPBACK_NAMES) | set(extra)
    bound = host.strip("[]").lower()
    if bound not in ("0.0.0.0", "::", ""):
        names.add(bound)
    return frozenset(names)


def serve(
    settings: Settings,
    host: str,
    port: int,
    allow_remote: bool,
    drain_seconds: float,
    say: Callable[[str], None],
    docs: bool = False,
    limit_concurrency: int = LIMIT_CONCURRENCY,
) -> None:
    """Run the HTTP service until it is told to stop.

    Args:
        settings: Runtime settings (the tokens file, the allowed host names).
        host: The address to listen on.
        port: The TCP port.
        allow_remote: Allow a non-loopback `host`.
        drain_seconds: On SIGTERM, how long to wait for a running run.
        say: Progress lines of the runs.
        docs: Serve /openapi.json, /docs and /redoc.
        limit_concurrency: Connections (and requests) at once before uvicorn answers 503.

    Raises:
        ConfigError: No tokens file, an unusable one (`pipelines.serve.tokens.load`), or a
            non-loopback address without `allow_remote` (exit 2, before anything listens).

    """
    if settings.api_tokens_file is None:
        raise ConfigError(
            "ATLAS_API_TOKENS_FILE is not set: `serve` needs a tokens file (create one with"
            " `python -m pipelines.run token create NAME --scope sync:read`)"
        )
    if not is_loopback(host) and not allow_remote:
        raise ConfigError(
            f"refusing to listen on {host}, which is not a loopback address: put a TLS proxy"
            " in front and pass --allow-remote"
        )
    import uvicorn

    from pipelines.serve.app import create_app
    from pipelines.serve.auth import TokenStore
    from pipelines.serve.worker import RunWorker

    store = TokenStore(settings.api_tokens_file)  # ConfigError when unusable
    app = create_app(
        settings,
        store,
        RunWorker(settings, say),
        drain_seconds,
        allowed_hosts=allowed_hosts(host, settings.api_allowed_hosts),
        docs=docs,
    )
    config = uvicorn.Config(
        app,
        host=host,
        port=port,
        log_level="info",
        # no proxy headers: the service is meant for loopback or behind a proxy you trust
        proxy_headers=False,
        server_header=False,
        # past this many connections uvicorn answers 503 at once: a flood of clients cannot
        # exhaust the thread pool that the endpoints reading Atlas DB run on
        limit_concurrency=limit_concurrency,
    )
    uvicorn.Server(config).run()
