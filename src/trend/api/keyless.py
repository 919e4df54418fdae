"""Keyless mode's guard against the browser: without ``TREND_API_KEY``, anything that can make a
request can write. Another site's page can make this machine's browser send one, so:

* the ``Host`` header must name this server (the address ``trend serve`` binds, ``localhost``,
  ``127.0.0.1`` or ``[::1]``, plus ``TREND_ALLOWED_HOSTS``): a DNS-rebinding page, whose own name is
  in the header, is refused with 400 (Starlette's ``TrustedHostMiddleware``);
* a write (any method but GET, HEAD and OPTIONS) that a browser marks as coming from another site,
  by ``Origin`` or ``Sec-Fetch-Site``, is refused with 403. Programs (curl, httpx, the CLI) send
  neither header and are unaffected. An origin named in ``TREND_CORS_ORIGINS`` (exactly, not ``*``)
  is trusted to write, and so is a page of this server itself (its origin is the request's Host);
  ``TREND_ALLOWED_HOSTS`` patterns (``*``, ``*.example.com``) never make another site's page one.

With a key, a page cannot send it, so the guard is not installed.
"""

from __future__ import annotations

from urllib.parse import urlsplit

from fastapi import FastAPI
from starlette._utils import parse_host_header
from starlette.middleware.trustedhost import TrustedHostMiddleware
from starlette.responses import JSONResponse
from starlette.types import ASGIApp, Receive, Scope, Send

from trend.api.errors import error_body
from trend.config import Settings

LOCAL_NAMES = ("localhost", "127.0.0.1", "[::1]")
# Binding these means every interface: they name no host a browser would send.
EVERY_INTERFACE = ("0.0.0.0", "::", "")
SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})


def allowed_hosts(settings: Settings) -> list[str]:
    """The Host values served in keyless mode."""
    bound = settings.host or ""
    own = [] if bound in EVERY_INTERFACE else [f"[{bound}]" if ":" in bound else bound]
    return [*LOCAL_NAMES, *own, *settings.allowed_hosts]


class SameSiteWrites:
    """Refuse a write a browser sent from a page of another site (see the module's docstring)."""

    def __init__(self, app: ASGIApp, hosts: list[str], origins: list[str]) -> None:
        self.app = app
        # Names, not patterns: "*" and "*.example.com" say which Host values are served, never which
        # pages may write.
        self.hosts = {host.lower() for host in hosts if "*" not in host}
        self.origins = {origin.lower() for origin in origins if origin != "*"}

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and scope["method"] not in SAFE_METHODS and self._cross_site(scope):
            body = error_body("cross_site", "a write from another site's page is refused without TREND_API_KEY")
            await JSONResponse(body, 403)(scope, receive, send)
            return
        await self.app(scope, receive, send)

    def _cross_site(self, scope: Scope) -> bool:
        headers = {name.decode("latin-1").lower(): value.decode("latin-1") for name, value in scope["headers"]}
        if headers.get("origin", "").lower() in self.origins:
            return False
        if headers.get("sec-fetch-site", "").lower() == "cross-site":
            return True
        origin = headers.get("origin")
        if origin is None:
            return False
        parsed = parse_host_header(urlsplit(origin).netloc) if origin != "null" else None
        if parsed is None:
            return True  # "null" (a sandboxed page, a file) or unreadable: never this server
        if urlsplit(origin).netloc.lower() == headers.get("host", "").lower():
            return False  # this server's own page (the dashboard), under whatever name it was reached
        return parsed.host.lower() not in self.hosts


def install(app: FastAPI, settings: Settings) -> None:
    """The guard, on an app served without a write key at a known address (``trend serve``)."""
    if settings.api_key is not None or settings.host is None:
        return
    hosts = allowed_hosts(settings)
    app.add_middleware(SameSiteWrites, hosts=hosts, origins=settings.cors_origins)
    app.add_middleware(TrustedHostMiddleware, allowed_hosts=hosts, www_redirect=False)  # outermost
