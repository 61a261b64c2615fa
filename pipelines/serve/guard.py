"""Every check that needs no request body, done before a byte of the body is read.

`Guard` refuses what it can from the request line and headers alone (Host, cross-site
requests, the token and its scope, content type and size); FastAPI parses a body only
after that, and never more than `MAX_BODY_BYTES` of it.
"""

from __future__ import annotations

from urllib.parse import urlsplit

from fastapi.responses import JSONResponse
from starlette.datastructures import Headers
from starlette.routing import BaseRoute, Match
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from pipelines.serve import tokens
from pipelines.serve.auth import REALM, TOKEN_KEY, TokenStore, TokensUnusable, needed_scope
from pipelines.serve.auth import presented as presented_token

MAX_BODY_BYTES = 8 * 1024
"""The largest request body read: the largest meaningful one (every table named) is ~150 bytes."""


class Refused(Exception):
    """A request `Guard` answers itself."""

    def __init__(self, status: int, detail: str, headers: dict[str, str] | None = None) -> None:
        """An answer with this status code, ``{"detail": detail}`` and these headers."""
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


def _same_origin(headers: Headers) -> None:
    """Refuse a POST another web site makes a browser send with its saved Basic login."""
    origin = headers.get("origin")
    if origin and urlsplit(origin).netloc != headers.get("host"):
        raise Refused(403, "cross-site request refused")


def _has_body(headers: Headers) -> bool:
    return "transfer-encoding" in headers or headers.get("content-length", "0") != "0"


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
        """Guard `app`, whose `routes` say which scope each path needs.

        Args:
            app: The application behind the guard.
            store: The API tokens.
            routes: The routes whose endpoints demand a scope (`auth.RequireScope`).
            public: Paths that need no token.
            allowed_hosts: The names a request's ``Host`` header may give (no port).

        """
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
        except Refused as refused:
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
            raise Refused(400, "the Host header names none of the service's host names")
        if headers.get("sec-fetch-site") == "cross-site" and not (
            scope["method"] in ("GET", "HEAD") and headers.get("sec-fetch-mode") == "navigate"
        ):
            # only following a link from elsewhere is let through: it reads, and shows the
            # answer to the user, not to the linking page
            raise Refused(403, "cross-site request refused")
        if scope["path"] not in self.public:
            self._authenticate(scope, headers)
        if scope["method"] not in ("GET", "HEAD", "OPTIONS"):
            _same_origin(headers)
            media = (headers.get("content-type") or "").split(";", 1)[0].strip().lower()
            # an HTML form can send only form, multipart or text content: never JSON
            if media != "application/json" and (media or has_body):
                raise Refused(415, "a request body must be JSON (Content-Type: application/json)")
        length = headers.get("content-length")
        if length is not None and not length.isdigit():
            raise Refused(400, "a malformed Content-Length")
        if length is not None and int(length) > MAX_BODY_BYTES:
            raise Refused(413, f"the body is larger than {MAX_BODY_BYTES} bytes")

    def _authenticate(self, scope: Scope, headers: Headers) -> None:
        route = next((r for r in self.routes if r.matches(scope)[0] == Match.FULL), None)
        presented = presented_token(headers)
        token = None
        if presented:
            try:
                token = tokens.find(self.store.current(), presented)
            except TokensUnusable:
                raise Refused(
                    503,
                    "no token is valid now: the service's tokens file is unusable (its log"
                    " says why)",
                ) from None
        if token is None:
            # never the presented value: tokens stay out of logs and answers
            raise Refused(
                401,
                "a valid token is needed: Authorization: Bearer <token>, or Basic with the"
                " token as password",
                {"WWW-Authenticate": f'Basic realm="{REALM}", charset="UTF-8"'},
            )
        needed = needed_scope(route) if route is not None else None
        if needed is not None and needed not in token.scopes:
            raise Refused(403, f"token {token.name!r} lacks the {needed} scope")
        scope[TOKEN_KEY] = token


async def _read_body(receive: Receive) -> bytes:
    """The whole body, or `Refused` (413) as soon as it passes `MAX_BODY_BYTES`.

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
            raise Refused(413, f"the body is larger than {MAX_BODY_BYTES} bytes")
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
