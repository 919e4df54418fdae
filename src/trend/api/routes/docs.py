"""GET /docs and /openapi.json from trend's own router: Swagger UI served from the package (the
``swagger-ui-bundle-v2`` distribution, no CDN), and a schema that works under any mount prefix."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import swagger_ui_bundle
from fastapi import APIRouter, FastAPI, Request
from fastapi.openapi.docs import get_swagger_ui_html
from fastapi.openapi.utils import get_openapi
from fastapi.responses import HTMLResponse, JSONResponse, Response

from trend.api.errors import ApiError, trend_router
from trend.config import Settings
from trend.logging import get_logger
from trend.version import __version__

_SWAGGER = Path(swagger_ui_bundle.swagger_ui_path)
# A fixed list: nothing the client names is ever turned into a path.
_ASSETS = {
    "swagger-ui-bundle.js": "text/javascript; charset=utf-8",
    "swagger-ui.css": "text/css; charset=utf-8",
    "favicon-32x32.png": "image/png",
}
_log = get_logger("trend.api")
TITLE = "trend"
DESCRIPTION = "Exact, real-time trends from an event stream."


def router(api_routes: APIRouter, schemas: dict[str, Any], settings: Settings) -> APIRouter:
    """The docs of ``api_routes``, the rest of trend's router; ``schemas`` are named components that
    routes refer to by hand (the events body). ``settings`` say which calls need a key."""
    api = trend_router(tags=["docs"], include_in_schema=False)
    schema: dict[str, Any] = {}

    @api.get("/openapi.json")
    async def openapi(request: Request) -> JSONResponse:
        if not schema:
            schema.update(get_openapi(title=TITLE, version=__version__, description=DESCRIPTION,
                                      routes=api_routes.routes))
            schema.setdefault("components", {}).setdefault("schemas", {}).update(schemas)
            _key_optional_where_unset(schema, settings)
        # Mounted under a prefix, the paths are relative to it: say so, so "Try it out" and clients
        # generated from this schema call the right URLs.
        prefix = request.url.path.removesuffix("/openapi.json")
        return JSONResponse({**schema, "servers": [{"url": prefix}]} if prefix else schema)

    @api.get("/docs")
    async def docs() -> HTMLResponse:
        # Relative URLs: right at /docs and at /any/prefix/docs alike.
        return get_swagger_ui_html(openapi_url="openapi.json", title=f"{TITLE} API",
                                   swagger_js_url="docs-assets/swagger-ui-bundle.js",
                                   swagger_css_url="docs-assets/swagger-ui.css",
                                   swagger_favicon_url="docs-assets/favicon-32x32.png")

    @api.get("/docs-assets/{name}")
    async def asset(name: str) -> Response:
        if name not in _ASSETS:
            raise ApiError(404, "not_found", "no such asset")
        return Response((_SWAGGER / name).read_bytes(), media_type=_ASSETS[name],
                        headers={"Cache-Control": "public, max-age=86400"})

    return api


def _key_optional_where_unset(schema: dict[str, Any], settings: Settings) -> None:
    """Say which calls really need the key on this server: without TREND_API_KEY none do, and reads
    need one only with TREND_READ_KEY. ``{}`` among an operation's requirements means "or none"."""
    for operations in schema.get("paths", {}).values():
        for method, operation in operations.items():
            needed = settings.read_key is not None if method in ("get", "head") else settings.api_key is not None
            if operation.get("security") and not needed:
                operation["security"] = [*operation["security"], {}]


def completing_host_schema(schemas: dict[str, Any]) -> Callable[[Any], Any]:
    """A router lifespan that adds ``schemas`` to the schema of the app that includes trend's router.

    FastAPI publishes only the models it finds in routes' signatures; the events body is read by hand
    (for speed), so its named schemas would be missing from a host app's /openapi.json and generated
    clients would skip ``POST /v1/events``. A router's lifespan is the one place that sees the host app.
    """

    @asynccontextmanager
    async def lifespan(app: Any) -> AsyncIterator[None]:
        if isinstance(app, FastAPI):
            add_schemas(app, schemas)
        yield

    return lifespan


def add_schemas(app: FastAPI, schemas: dict[str, Any]) -> None:
    """Wrap ``app.openapi`` (FastAPI's documented way to extend it) so its components hold ``schemas``."""
    generate = app.openapi
    if getattr(generate, "adds_trend_schemas", False):
        return

    def openapi() -> dict[str, Any]:
        schema = generate()
        named = schema.setdefault("components", {}).setdefault("schemas", {})
        for name, part in schemas.items():
            if named.setdefault(name, part) is not part and named[name] != part:
                _log.warning("the app's schema %r hides trend's: generated clients will send the app's %s",
                             name, name)
        return schema

    openapi.adds_trend_schemas = True  # type: ignore[attr-defined]
    app.openapi = openapi  # type: ignore[method-assign]
