"""Dependencies for one ``Trend``: routers are built per instance, so an app can mount the API
under any prefix without sharing state through ``app.state``."""

from __future__ import annotations

import hmac
from typing import Annotated, Any
from urllib.parse import urlsplit

from fastapi import Depends, Query, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from pydantic import SecretStr, WithJsonSchema

from trend.api.errors import ApiError
from trend.errors import QueryError
from trend.service import Trend
from trend.validation import parse_moment

# fastapi.security's scheme, so the schema declares it (Swagger's Authorize button, generated clients'
# auth). auto_error off: trend answers a missing key itself, in its own error body.
_BEARER = HTTPBearer(auto_error=False, scheme_name="TrendKey",
                     description="Authorization: Bearer <key>. TREND_API_KEY for writes and admin calls; "
                                 "TREND_READ_KEY (or the write key) for reads when one is set.")
Authorization = Annotated[HTTPAuthorizationCredentials | None, Depends(_BEARER)]


def _token(authorization: HTTPAuthorizationCredentials | None) -> str | None:
    return authorization.credentials.strip() if authorization is not None else None


def _matches(token: str, key: str) -> bool:
    # Constant-time comparison, so response timing does not leak the key.
    return hmac.compare_digest(token.encode(), key.encode())


def _require(authorization: HTTPAuthorizationCredentials | None, keys: list[SecretStr]) -> None:
    """401 without a bearer token, 403 when it matches none of ``keys``."""
    token = _token(authorization)
    if token is None:
        raise ApiError(401, "unauthorized", "missing Authorization: Bearer <key>")
    if not any(_matches(token, key.get_secret_value()) for key in keys):
        raise ApiError(403, "forbidden", "the key is not valid")


def write_access(trend: Trend) -> Any:
    """Writes and admin calls need ``TREND_API_KEY`` when it is set."""

    # async: a comparison needs no thread, and a sync dependency would take a hop to one per request.
    async def check(authorization: Authorization = None) -> None:
        if trend.settings.api_key is not None:
            _require(authorization, [trend.settings.api_key])

    return Depends(check)


def is_admin(trend: Trend, authorization: HTTPAuthorizationCredentials | None, request: Request) -> bool:
    """Whether a request may see what only the write key shows. Without a write key: any program, and
    this server's own page, but not another site's page (which CORS may let read answers)."""
    key = trend.settings.api_key
    if key is None:
        return not from_another_page(request)
    token = _token(authorization)
    return token is not None and _matches(token, key.get_secret_value())


def from_another_page(request: Request) -> bool:
    """Whether a browser says it sent the request from a page of another origin (``Origin`` other
    than the request's own Host, or ``Sec-Fetch-Site`` other than same-origin). Programs send neither."""
    site = request.headers.get("sec-fetch-site")
    if site is not None and site.lower() not in ("same-origin", "none"):
        return True
    origin = request.headers.get("origin")
    return origin is not None and urlsplit(origin).netloc.lower() != request.headers.get("host", "").lower()


def read_access(trend: Trend) -> Any:
    """Reads are open unless ``TREND_READ_KEY`` is set; the write key is accepted for reads too."""

    async def check(authorization: Authorization = None) -> None:
        settings = trend.settings
        if settings.read_key is not None:
            _require(authorization, [key for key in (settings.read_key, settings.api_key) if key is not None])

    return Depends(check)


def optional_time(trend: Trend, name: str, text: str | None) -> int | None:
    """A query-string time: ISO-8601 with a zone, epoch seconds, ``now`` or ``now-2h``, as on the
    command line; relative to the Trend's clock."""
    if text is None or text == "":
        return None
    try:
        return parse_moment(text, trend.clock.now_ms())
    except ValueError as exc:
        raise QueryError(name, str(exc)) from None


Event = Annotated[str, Query(min_length=1, max_length=64, description="the event type, e.g. search")]
Segment = Annotated[str | None, Query(max_length=64, description="one segment; omit for all, summed")]
Limit = Annotated[int, Query(ge=1, le=100)]
# A date-time for generated clients (a datetime object), or the other forms as text.
Time = Annotated[str | None, Query(description="ISO-8601 with a zone, epoch seconds, now, or now-<duration> "
                                               "such as now-2h"),
                 WithJsonSchema({"anyOf": [{"type": "string", "format": "date-time"},
                                           {"type": "string", "description": "epoch seconds, now, or now-2h"},
                                           {"type": "null"}]})]
