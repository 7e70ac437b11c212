"""Browser-facing protections: Host header checked, unsafe cross-origin requests refused,
security headers.

CORS itself is Starlette's CORSMiddleware with the ``cors_origins`` allow-list (closed by
default). CORS only hides answers from scripts; a cross-origin form POST still arrives, so
:class:`OriginGuard` refuses unsafe-method requests whose ``Origin`` is neither allowed nor the
server's own.
"""

from __future__ import annotations

import ipaddress
import socket
from collections.abc import Iterable

from fastapi.responses import JSONResponse
from starlette.datastructures import Headers, MutableHeaders
from starlette.middleware.trustedhost import TrustedHostMiddleware
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


def machine_names() -> list[str]:
    """localhost and the names this machine answers to (hostname, FQDN, mDNS ``.local``)."""
    hostname = socket.gethostname()
    names = {"localhost", "*.localhost", hostname, f"{hostname}.local", socket.getfqdn()}
    return sorted(n.lower() for n in names if n)


def ip_literal(host: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    try:
        return ipaddress.ip_address(host)
    except ValueError:
        return None


class HostGuard:
    """400 for a Host header the service does not answer to (DNS rebinding: a page on an
    attacker's name that resolves to this server). Names are matched by Starlette's
    TrustedHostMiddleware (its plain-text refusal becomes the API's JSON error); with no
    ``allowed`` list, the default is :func:`machine_names` plus any IP address (an IP
    literal cannot be rebound). Loopback addresses are always served: the web client's
    sessions call the API at 127.0.0.1."""

    def __init__(self, app: ASGIApp, allowed: Iterable[str] = ()) -> None:
        self.app = app
        self.allowed = list(allowed)
        self.any_ip = not self.allowed
        self.names = self.allowed or machine_names()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] not in ("http", "websocket"):
            await self.app(scope, receive, send)
            return
        ip = ip_literal(_bare_host(Headers(scope=scope).get("host", "")))
        if ip is not None and (self.any_ip or ip.is_loopback):
            await self.app(scope, receive, send)
            return
        passed = False

        async def through(scope: Scope, receive: Receive, send: Send) -> None:
            nonlocal passed
            passed = True
            await self.app(scope, receive, send)

        async def refused(message: Message) -> None:
            if passed:
                await send(message)
            elif message["type"] == "http.response.start":
                host = Headers(scope=scope).get("host", "")
                await JSONResponse(status_code=400, content={
                    "detail": f"this server does not answer to the host {host[:100]!r}; "
                              "add it to allowed_hosts"})(scope, receive, send)
            # the middleware's plain-text body: replaced by the JSON answer above

        checker = TrustedHostMiddleware(through, allowed_hosts=self.names, www_redirect=False)
        await checker(scope, receive, refused)


def _bare_host(host: str) -> str:
    """The Host header without its port ('[::1]:8000' -> '::1', '10.0.0.5:8000' -> ...)."""
    if host.startswith("["):
        return host[1:host.index("]")] if "]" in host else host
    return host.rsplit(":", 1)[0] if host.count(":") == 1 else host
