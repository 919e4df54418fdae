"""One error body for every refusal: ``{"error": {"code", "message", "index", "field"}}``. Never a trace."""

from __future__ import annotations

import re
import weakref
from collections.abc import Callable, Coroutine, Mapping, Sequence
from typing import Any

from fastapi import APIRouter, FastAPI, Request, Response
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from fastapi.routing import APIRoute
from pydantic import BaseModel, Field
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.routing import Match

from trend.errors import (
    LISTED_AT_MOST,
    CommitOutcomeUnknownError,
    DatabaseUnavailableError,
    EventValidationError,
    PayloadTooLargeError,
    QueryError,
    StorageError,
    TransactionAbortedError,
)
from trend.logging import get_logger

log = get_logger("api")


class Problem(BaseModel):
    index: int
    field: str
    message: str


class ErrorDetail(BaseModel):
    code: str
    message: str
    index: int | None = None
    field: str | None = None
    errors: int | None = Field(None, description="invalid_event: how many events are invalid")
    problems: list[Problem] | None = Field(None, description=f"invalid_event: the first {LISTED_AT_MOST}")


class ErrorBody(BaseModel):
    """Every refusal has this body."""

    error: ErrorDetail


def error_responses(*codes: int) -> dict[int | str, dict[str, Any]]:
    """OpenAPI entries for the refusals a route can answer with."""
    meaning = {400: "Not valid JSON", 401: "No key given", 403: "Wrong key", 404: "Not found",
               413: "Body or batch too large", 415: "Not JSON", 422: "Invalid input",
               429: "This client's share is used (too many at once, or too many a second): retry after Retry-After",
               503: "Database unavailable or busy, or a conflict it undid: retry after Retry-After"}
    return {code: {"model": ErrorBody, "description": meaning[code]} for code in codes}


def error_body(code: str, message: str, *, index: int | None = None, field: str | None = None,
               **extra: Any) -> dict[str, Any]:
    return {"error": {"code": code, "message": message, "index": index, "field": field, **extra}}


class ApiError(Exception):
    """Raised by routes for refusals that are not part of the domain error tree (auth, media type)."""

    def __init__(self, status: int, code: str, message: str, *, field: str | None = None,
                 headers: Mapping[str, str] | None = None) -> None:
        super().__init__(message)
        self.status, self.code, self.message, self.field = status, code, message, field
        self.headers = dict(headers or {})


def _api_error(exc: ApiError) -> JSONResponse:
    headers = {"WWW-Authenticate": "Bearer"} if exc.status == 401 else {}
    return JSONResponse(error_body(exc.code, exc.message, field=exc.field), exc.status,
                        headers={**headers, **exc.headers})


def _invalid_event(exc: EventValidationError) -> JSONResponse:
    # The first problem in the fields every error has; then at most LISTED_AT_MOST of them, and the count.
    first = exc.problems[0]
    problems = [{"index": p.position, "field": p.field, "message": p.message}
                for p in exc.problems[:LISTED_AT_MOST]]
    return JSONResponse(error_body("invalid_event", first.message, index=first.position, field=first.field,
                                   errors=len(exc.problems), problems=problems), 422)


def _too_large(exc: PayloadTooLargeError) -> JSONResponse:
    return JSONResponse(error_body("payload_too_large", str(exc)), 413)


def _bad_query(exc: QueryError) -> JSONResponse:
    return JSONResponse(error_body("invalid_parameter", str(exc), field=exc.parameter), 422)


def _bad_request(exc: RequestValidationError) -> JSONResponse:
    first = exc.errors()[0]
    field = ".".join(str(part) for part in first["loc"][1:]) or None
    message = first["msg"]
    choices = re.fullmatch(r"\^\(([^()]*)\)\$", str((first.get("ctx") or {}).get("pattern", "")))
    if first.get("type") == "string_pattern_mismatch" and choices:  # a choice (routes/trends.py, _one_of)
        message = f"expected one of {', '.join(choices.group(1).split('|'))}; got {first.get('input')!r}"
    return JSONResponse(error_body("invalid_parameter", f"{field}: {message}", field=field), 422)


def _storage(exc: StorageError) -> JSONResponse:
    log.error("storage error: %s", exc)
    if isinstance(exc, CommitOutcomeUnknownError):
        # The batch may be stored: sent again, only events with an event_id are stored once.
        return JSONResponse(error_body("commit_outcome_unknown", str(exc)), 503, headers={"Retry-After": "5"})
    if isinstance(exc, DatabaseUnavailableError):
        return JSONResponse(error_body("database_unavailable", "the database is unavailable; retry later"), 503,
                            headers={"Retry-After": "5"})
    if isinstance(exc, TransactionAbortedError):
        return JSONResponse(error_body("conflict", "the database undid the request in a conflict; retry it"), 503,
                            headers={"Retry-After": "1"})
    # The database refused this one request: retrying it would only be refused again.
    return JSONResponse(error_body("storage_error", "the database refused the request"), 500)


def _http(exc: StarletteHTTPException) -> JSONResponse:
    # Keep the exception's headers: a 405 must say which methods are allowed (RFC 9110).
    return JSONResponse(error_body("http_error", str(exc.detail)), exc.status_code, headers=exc.headers)


def _unexpected(_exc: Exception) -> JSONResponse:
    log.exception("unexpected error")
    return JSONResponse(error_body("internal_error", "internal error"), 500)


# Exception type → its response. The most specific class in an exception's MRO wins.
HANDLERS: dict[type[Exception], Callable[[Any], JSONResponse]] = {
    ApiError: _api_error, EventValidationError: _invalid_event, PayloadTooLargeError: _too_large,
    QueryError: _bad_query, RequestValidationError: _bad_request, StorageError: _storage,
    StarletteHTTPException: _http, Exception: _unexpected,
}


def error_response(exc: Exception) -> JSONResponse:
    """The documented error body for any exception a route raised."""
    handler = next(HANDLERS[kind] for kind in type(exc).__mro__ if kind in HANDLERS)
    return handler(exc)


# Routes whose shared answers may go out before FastAPI parses the request (api/answers.py,
# SharedAnswers.hot), by endpoint: an app that includes the router makes copies of its routes, and
# each copy keeps the endpoint.
HOT_ANSWERS: weakref.WeakKeyDictionary[Callable[..., Any], Callable[[Request], Response | None]] = (
    weakref.WeakKeyDictionary())


class TrendRoute(APIRoute):
    """A route that answers its own errors with the error body, so trend's router keeps its error
    contract when an app mounts it without ``create_app``'s handlers (the README's embedding)."""

    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        handle = super().get_route_handler()

        async def handle_with_errors(request: Request) -> Response:
            try:
                hot = HOT_ANSWERS.get(self.endpoint)
                answer = hot(request) if hot is not None else None
                return answer if answer is not None else await handle(request)
            except Exception as exc:
                return error_response(exc)

        return handle_with_errors


def operation_id(route: APIRoute) -> str:
    """The endpoint's name (``top``, ``ingest_events``): what generated clients call their methods."""
    return route.name


def trend_router(**options: Any) -> APIRouter:
    """A router of trend's routes: errors in trend's body, operation ids that read well."""
    return APIRouter(route_class=TrendRoute, generate_unique_id_function=operation_id, **options)


def install_error_handlers(app: FastAPI) -> None:
    """For what happens outside trend's routes (an unknown path, a method not allowed)."""

    async def handle(request: Request, exc: Exception) -> Response:
        response = error_response(exc)
        if isinstance(exc, StarletteHTTPException) and exc.status_code == 405:
            # Starlette names the methods of the first route with the path; a path can have several.
            # Should none be found, Starlette's header stays rather than an empty one.
            methods = _methods_of(request)
            if methods:
                response.headers["Allow"] = ", ".join(methods)
        return response

    for kind in HANDLERS:
        app.add_exception_handler(kind, handle)


def _methods_of(request: Request) -> list[str]:
    """Every method some route answers at this request's path."""
    return sorted(_methods_in(request.app.router.routes, request.scope))


def _methods_in(routes: Sequence[Any], scope: Mapping[str, Any]) -> set[str]:
    methods: set[str] = set()
    for route in routes:
        # FastAPI keeps an included router whole, behind its prefix: look inside it.
        inner = getattr(route, "original_router", None)
        if inner is not None:
            prefix = getattr(getattr(route, "include_context", None), "prefix", "") or ""
            path = scope["path"]
            if path.startswith(prefix):
                methods |= _methods_in(inner.routes, {**scope, "path": path[len(prefix):] or "/"})
            continue
        match, _ = route.matches(scope)
        if match is not Match.NONE:
            methods.update(getattr(route, "methods", None) or ())
    return methods
