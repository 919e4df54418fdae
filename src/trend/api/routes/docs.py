"""GET /docs and /openapi.json from trend's own router: Swagger UI served from the package (the
``swagger-ui-bundle-v2`` distribution, no CDN), and a schema that works under any mount prefix."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import swagger_ui_bundle
from fastapi import APIRouter, Request
from fastapi.openapi.docs import get_swagger_ui_html
from fastapi.openapi.utils import get_openapi
from fastapi.responses import HTMLResponse, JSONResponse, Response

from trend.api.errors import ApiError, TrendRoute
from trend.version import __version__

_SWAGGER = Path(swagger_ui_bundle.swagger_ui_path)
# A fixed list: nothing the client names is ever turned into a path.
_ASSETS = {
    "swagger-ui-bundle.js": "text/javascript; charset=utf-8",
    "swagger-ui.css": "text/css; charset=utf-8",
    "favicon-32x32.png": "image/png",
}
TITLE = "trend"
DESCRIPTION = "Exact, real-time trends from an event stream."


def router(api_routes: APIRouter, schemas: dict[str, Any]) -> APIRouter:
    """The docs of ``api_routes``, the rest of trend's router; ``schemas`` are named components that
    routes refer to by hand (the events body)."""
    api = APIRouter(route_class=TrendRoute, tags=["docs"], include_in_schema=False)
    schema: dict[str, Any] = {}

    @api.get("/openapi.json")
    async def openapi(request: Request) -> JSONResponse:
        if not schema:
            schema.update(get_openapi(title=TITLE, version=__version__, description=DESCRIPTION,
                                      routes=api_routes.routes))
            schema.setdefault("components", {}).setdefault("schemas", {}).update(schemas)
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
