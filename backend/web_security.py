"""Browser-facing protections: unsafe cross-origin requests refused, security headers.

CORS itself is Starlette's CORSMiddleware with the ``cors_origins`` allow-list (closed by
default). CORS only hides answers from scripts; a cross-origin form POST still arrives, so
:class:`OriginGuard` refuses unsafe-method requests whose ``Origin`` is neither allowed nor the
server's own.
"""

from __future__ import annotations

from collections.abc import Iterable

from fastapi.responses import JSONResponse
from starlette.datastructures import Headers, MutableHeaders
from starlette.types import ASGIApp, Message, Receive, Scope, Send

SAFE_METHODS = {"GET", "HEAD", "OPTIONS", "TRACE"}
API_CSP = "default-src 'none'; frame-ancestors 'none'"
COMMON_HEADERS = {
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
    "Referrer-Policy": "no-referrer",
}


def own_origin(scope: Scope) -> str | None:
    host = Headers(scope=scope).get("host")
    if not host:
        return None
    return f"{scope.get('scheme', 'http')}://{host}".lower()


class OriginGuard:
    def __init__(self, app: ASGIApp, allowed: Iterable[str]) -> None:
        self.app = app
        self.allowed = {o.rstrip("/").lower() for o in allowed}

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and scope["method"] not in SAFE_METHODS:
            origin = Headers(scope=scope).get("origin")
            if origin is not None:
                origin = origin.rstrip("/").lower()
                if origin not in self.allowed and origin != own_origin(scope):
                    response = JSONResponse(status_code=403, content={
                        "detail": f"cross-origin request from {origin} refused; allowed "
                                  "origins are set with cors_origins"})
                    await response(scope, receive, send)
                    return
        await self.app(scope, receive, send)


class SecurityHeaders:
    """nosniff, no framing and no referrer on every answer; a strict CSP on API answers only
    (the Flet web client needs scripts and wasm, and the docs page its own scripts)."""

    def __init__(self, app: ASGIApp, api_prefix: str, csp_exempt: Iterable[str] = ()) -> None:
        self.app = app
        self.api_prefix = api_prefix
        self.csp_exempt = tuple(csp_exempt)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        path = scope["path"]
        strict = (path.startswith(self.api_prefix) or path in ("/healthz", "/readyz")) and \
            not path.startswith(self.csp_exempt)

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = MutableHeaders(scope=message)
                for name, value in COMMON_HEADERS.items():
                    headers.setdefault(name, value)
                if strict:
                    headers.setdefault("Content-Security-Policy", API_CSP)
            await send(message)

        await self.app(scope, receive, send_with_headers)
