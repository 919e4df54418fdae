"""FastAPI dependencies as ``Annotated`` aliases."""

from __future__ import annotations

import hmac
from typing import Annotated

from fastapi import Depends, Header, Request

from trend.api.errors import ApiError
from trend.service import Trend


def get_trend(request: Request) -> Trend:
    trend: Trend = request.app.state.trend
    return trend


TrendDep = Annotated[Trend, Depends(get_trend)]


def _check_bearer(authorization: str | None, expected: str) -> None:
    if not authorization:
        raise ApiError(401, "unauthorized", "missing Authorization: Bearer <key>")
    scheme, _, token = authorization.partition(" ")
    # Constant-time comparison, so response timing does not leak the key.
    if scheme.lower() != "bearer" or not hmac.compare_digest(token.strip().encode(), expected.encode()):
        raise ApiError(403, "forbidden", "the key is not valid")


def require_write_key(trend: TrendDep, authorization: Annotated[str | None, Header()] = None) -> None:
    """Writes and admin calls need ``TREND_API_KEY`` when it is set."""
    key = trend.settings.api_key
    if key is not None:
        _check_bearer(authorization, key.get_secret_value())


def require_read_key(trend: TrendDep, authorization: Annotated[str | None, Header()] = None) -> None:
    """Reads are open unless ``TREND_READ_KEY`` is set; the write key is accepted for reads too."""
    read_key = trend.settings.read_key
    if read_key is None:
        return
    write_key = trend.settings.api_key
    if write_key is not None and authorization and hmac.compare_digest(
        authorization.partition(" ")[2].strip().encode(), write_key.get_secret_value().encode()
    ):
        return
    _check_bearer(authorization, read_key.get_secret_value())


WriteAccess = Depends(require_write_key)
ReadAccess = Depends(require_read_key)
