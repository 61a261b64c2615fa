"""Who is calling: the tokens file as the service reads it, and the scope each route demands.

`guard.Guard` checks the token and the route's scope before a byte of the body is read;
the routes' `RequireScope` dependency then hands the endpoint the token it found, and names
the security schemes in OpenAPI. (No ``from __future__ import annotations``: FastAPI reads
the annotations of `RequireScope.__call__`, and an instance has no globals to resolve them.)
"""

import base64
import binascii
import logging
import os
from pathlib import Path
from typing import Annotated

from fastapi import Depends, HTTPException, Request
from fastapi.security import (
    HTTPAuthorizationCredentials,
    HTTPBasic,
    HTTPBasicCredentials,
    HTTPBearer,
)
from starlette.datastructures import Headers
from starlette.routing import BaseRoute

from pipelines.errors import ConfigError
from pipelines.serve import tokens

LOG = logging.getLogger("pipelines.serve")

REALM = "kimai-atlas-sync"

TOKEN_KEY = "kimai_atlas_sync.token"
"""Where `guard.Guard` leaves the caller's token in the ASGI scope."""

# both documented in OpenAPI; neither fails by itself, `RequireScope` decides
bearer_scheme = HTTPBearer(auto_error=False, description="Authorization: Bearer <token>")
basic_scheme = HTTPBasic(
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


class RequireScope:
    """A dependency: the caller's token, which must hold `scope`.

    `guard.Guard` has already checked the token and this scope before the body was read
    (it finds the scope here, on the route); this reads the token it left, and names the
    schemes in OpenAPI.
    """

    def __init__(self, scope: str) -> None:
        """Demand `scope` (one of `tokens.SCOPES`)."""
        self.scope = scope

    def __call__(
        self,
        request: Request,
        bearer: Annotated[HTTPAuthorizationCredentials | None, Depends(bearer_scheme)],
        basic: Annotated[HTTPBasicCredentials | None, Depends(basic_scheme)],
    ) -> tokens.Token:
        """The token `guard.Guard` accepted for this request."""
        del bearer, basic  # declared for OpenAPI's security schemes; `Guard` read them
        token = request.scope.get(TOKEN_KEY)
        # unreachable behind `Guard`; refuse anyway rather than trust a missing check
        if not isinstance(token, tokens.Token) or self.scope not in token.scopes:
            raise HTTPException(403, f"the token lacks the {self.scope} scope")
        return token


def needed_scope(route: BaseRoute) -> str | None:
    """The scope a route's endpoint demands (its `RequireScope` dependency), if any."""
    dependant = getattr(route, "dependant", None)
    for dependency in dependant.dependencies if dependant is not None else ():
        if isinstance(dependency.call, RequireScope):
            return dependency.call.scope
    return None


def presented(headers: Headers) -> str | None:
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
