"""One error body for every refusal: ``{"error": {"code", "message", "index", "field"}}``. Never a trace."""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import BaseModel
from starlette.exceptions import HTTPException as StarletteHTTPException

from trend.errors import (
    DatabaseUnavailableError,
    EventValidationError,
    PayloadTooLargeError,
    QueryError,
    StorageError,
)
from trend.logging import get_logger

log = get_logger("api")


class ErrorDetail(BaseModel):
    code: str
    message: str
    index: int | None = None
    field: str | None = None


class ErrorBody(BaseModel):
    """Every refusal has this body."""

    error: ErrorDetail


def error_responses(*codes: int) -> dict[int | str, dict[str, Any]]:
    """OpenAPI entries for the refusals a route can answer with."""
    meaning = {401: "No key given", 403: "Wrong key", 404: "Not found", 413: "Body or batch too large",
               415: "Not JSON", 422: "Invalid input", 503: "Database unavailable"}
    return {code: {"model": ErrorBody, "description": meaning[code]} for code in codes}


def error_body(code: str, message: str, *, index: int | None = None, field: str | None = None,
               **extra: Any) -> dict[str, Any]:
    return {"error": {"code": code, "message": message, "index": index, "field": field, **extra}}


class ApiError(Exception):
    """Raised by routes for refusals that are not part of the domain error tree (auth, media type)."""

    def __init__(self, status: int, code: str, message: str, *, field: str | None = None) -> None:
        super().__init__(message)
        self.status, self.code, self.message, self.field = status, code, message, field


def install_error_handlers(app: FastAPI) -> None:
    @app.exception_handler(ApiError)
    async def _api_error(_: Request, exc: ApiError) -> JSONResponse:
        headers = {"WWW-Authenticate": "Bearer"} if exc.status == 401 else None
        return JSONResponse(error_body(exc.code, exc.message, field=exc.field), exc.status, headers=headers)

    @app.exception_handler(EventValidationError)
    async def _invalid_event(_: Request, exc: EventValidationError) -> JSONResponse:
        first = exc.problems[0]
        return JSONResponse(error_body("invalid_event", first.message, index=first.position, field=first.field,
                                       errors=len(exc.problems)), 422)

    @app.exception_handler(PayloadTooLargeError)
    async def _too_large(_: Request, exc: PayloadTooLargeError) -> JSONResponse:
        return JSONResponse(error_body("payload_too_large", str(exc)), 413)

    @app.exception_handler(QueryError)
    async def _bad_query(_: Request, exc: QueryError) -> JSONResponse:
        return JSONResponse(error_body("invalid_parameter", str(exc), field=exc.parameter), 422)

    @app.exception_handler(RequestValidationError)
    async def _bad_request(_: Request, exc: RequestValidationError) -> JSONResponse:
        first = exc.errors()[0]
        field = ".".join(str(part) for part in first["loc"][1:]) or None
        return JSONResponse(error_body("invalid_parameter", f"{field}: {first['msg']}", field=field), 422)

    @app.exception_handler(StorageError)
    async def _storage(_: Request, exc: StorageError) -> JSONResponse:
        log.error("storage error: %s", exc)
        code = "database_unavailable" if isinstance(exc, DatabaseUnavailableError) else "storage_error"
        return JSONResponse(error_body(code, "the database is unavailable; retry later"), 503,
                            headers={"Retry-After": "5"})

    @app.exception_handler(StarletteHTTPException)
    async def _http(_: Request, exc: StarletteHTTPException) -> JSONResponse:
        # Keep the exception's headers: a 405 must say which methods are allowed (RFC 9110).
        return JSONResponse(error_body("http_error", str(exc.detail)), exc.status_code, headers=exc.headers)

    @app.exception_handler(Exception)
    async def _unexpected(_: Request, exc: Exception) -> JSONResponse:
        log.exception("unexpected error")
        return JSONResponse(error_body("internal_error", "internal error"), 500)
