"""GET /: the dashboard, with every asset shipped in the package (no CDN)."""

from __future__ import annotations

from importlib.resources import files

from fastapi import APIRouter
from fastapi.responses import HTMLResponse, Response

from trend.api.errors import ApiError, trend_router

_WEB = files("trend") / "web"
# A fixed list: nothing the client names is ever turned into a path.
_ASSETS = {
    "app.js": ("app.js", "text/javascript; charset=utf-8"),
    "style.css": ("style.css", "text/css; charset=utf-8"),
    "uPlot.iife.min.js": ("vendor/uPlot.iife.min.js", "text/javascript; charset=utf-8"),
    "uPlot.min.css": ("vendor/uPlot.min.css", "text/css; charset=utf-8"),
}
# uPlot sets element styles from script, hence 'unsafe-inline' for styles only; scripts stay locked to 'self'.
_CSP = ("default-src 'none'; script-src 'self'; style-src 'self' 'unsafe-inline'; connect-src 'self'; "
        "img-src 'self' data:; base-uri 'self'; form-action 'none'; frame-ancestors 'none'")


def router() -> APIRouter:
    api = trend_router(tags=["dashboard"], include_in_schema=False)

    @api.get("/")
    async def dashboard() -> HTMLResponse:
        page = (_WEB / "index.html").read_text(encoding="utf-8")
        return HTMLResponse(page, headers={"Content-Security-Policy": _CSP, "Cache-Control": "no-cache"})

    @api.get("/assets/{name}")
    async def asset(name: str) -> Response:
        if name not in _ASSETS:
            raise ApiError(404, "not_found", "no such asset")
        path, media_type = _ASSETS[name]
        return Response((_WEB / path).read_bytes(), media_type=media_type,
                        headers={"Cache-Control": "public, max-age=300"})

    return api
