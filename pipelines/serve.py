"""The ``serve`` command: checks before listening, then uvicorn until SIGTERM.

On SIGTERM (or Ctrl-C) uvicorn stops accepting connections, finishes the answers under
way, and the application's shutdown waits for a running run (`pipelines.api.create_app`).
"""

from __future__ import annotations

import ipaddress
from collections.abc import Callable

from pipelines.config import Settings
from pipelines.errors import ConfigError


def is_loopback(host: str) -> bool:
    """Whether binding `host` keeps the service on this machine."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False  # a host name: it may resolve to any interface


def serve(
    settings: Settings,
    host: str,
    port: int,
    allow_remote: bool,
    drain_seconds: float,
    say: Callable[[str], None],
) -> None:
    """Run the HTTP service until it is told to stop.

    Raises:
        ConfigError: No tokens file, a malformed one, or a non-loopback address without
            `allow_remote` (exit 2, before anything listens).

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

    from pipelines.api import TokenStore, create_app
    from pipelines.worker import RunWorker

    store = TokenStore(settings.api_tokens_file)  # ConfigError when missing or malformed
    app = create_app(settings, store, RunWorker(settings, say), drain_seconds)
    config = uvicorn.Config(
        app,
        host=host,
        port=port,
        log_level="info",
        # no proxy headers: the service is meant for loopback or behind a proxy you trust
        proxy_headers=False,
        server_header=False,
    )
    uvicorn.Server(config).run()
