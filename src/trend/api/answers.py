"""Shared answers for hot reads: identical requests share one computation and one encoded body, and
a client that holds the current answer gets 304.

The rules (docs/queries.md, "Shared answers"):

* Requests with the same parameters, whose window ends in the same minute, share an answer computed
  at most ``TREND_READ_SHARE_MS`` before them (500 ms by default), or the one being computed when
  they arrive (single flight). The answer says its own ``at`` and is exact as of it. A write of this
  process drops the shared answers, so its clients read their own writes.
* Its ETag is made of the parameters, the minute the window ends in, and the data's change stamp as
  it was when the computation began. A request whose ``If-None-Match`` holds the ETag of the same
  parameters, minute and current stamp gets 304 without any read: the items are the same.
* The change stamp is read at most every :data:`STAMP_MS`, and at once after this process stores
  events, so another process's write shows within that long.
* Under overload, when admission refuses to compute an answer anew, the last one of the same
  parameters stands in if it is at most :data:`STALE_S` old: it says its own ``at``.
* A hot answer goes out before FastAPI parses the request (:meth:`SharedAnswers.hot`): a request with
  the very path and query string of one already answered, asking for the current minute, gets the
  shared answer that request's parameters lead to, after the same read-rate check. Parsing and
  checking the parameters again (FastAPI's dependencies) cost more of the event loop than the rest of
  a hot read, and every answer of a route waits for the event loop.
"""

from __future__ import annotations

import asyncio
import gzip
import hashlib
import json
import threading
import time
from collections import OrderedDict
from collections.abc import Awaitable, Callable, Hashable, Mapping
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass, field
from typing import Any

from starlette.requests import Request
from starlette.responses import Response

from trend.api.errors import ApiError
from trend.model import MINUTE_MS

# How stale a change stamp may be when it decides a 304; this process's own writes renew it at once.
STAMP_MS = 100
# Answers at least this large go out gzipped to clients that accept it.
GZIP_BYTES = 1_024
_KEPT = 256
# The path and query strings remembered for hot answers: a client sending ever new ones evicts only them.
_QUERIES_KEPT = 1_024
# Under overload, a shared answer this recent stands in for a renewal that was refused.
STALE_S = 10.0


@dataclass
class Answer:
    body: bytes
    etag: str
    made: float  # time.monotonic() when the computation began
    _gzipped: bytes | None = field(default=None, repr=False)

    def gzipped(self) -> bytes:
        if self._gzipped is None:
            self._gzipped = gzip.compress(self.body, compresslevel=5)
        return self._gzipped


class Stamp:
    """The data's change stamp, read at most every :data:`STAMP_MS`; :meth:`written` renews it."""

    def __init__(self, read: Callable[[], Hashable]) -> None:
        self._read = read
        self._lock = threading.Lock()
        self._value: Hashable = None
        self._read_at = -1.0

    def written(self) -> None:
        with self._lock:
            self._read_at = -1.0

    def fresh(self) -> tuple[Hashable] | None:
        """``(stamp,)`` if it was read within :data:`STAMP_MS`, else None: no database call, so the
        event loop may ask without a hop to a thread."""
        with self._lock:
            if time.monotonic() - self._read_at <= STAMP_MS / 1000:
                return (self._value,)
        return None

    def current(self) -> Hashable:
        with self._lock:
            if time.monotonic() - self._read_at <= STAMP_MS / 1000:
                return self._value
        value = self._read()
        with self._lock:
            self._value, self._read_at = value, time.monotonic()
        return value


def etag(key: Hashable, minute: int, stamp: Hashable) -> str:
    digest = hashlib.blake2b(repr((key, minute, stamp)).encode(), digest_size=12).hexdigest()
    return f'W/"{digest}"'


# Runs a computation off the event loop: the reads' own threads (trend/api/admission.py).
Runner = Callable[[Callable[[], Any]], Awaitable[Any]]
# Holds a read's place while an answer is computed (trend/api/admission.py): shared answers need none.
Gate = Callable[[Request], AbstractAsyncContextManager[None]]


class SharedAnswers:
    def __init__(self, share_ms: int, stamp: Stamp, headers: Mapping[str, str], run: Runner, gate: Gate,
                 now_ms: Callable[[], int], admit: Callable[[Request], None] | None) -> None:
        """``admit``: what a hot answer checks before it goes out, as the routes' dependencies would
        (the client's read rate); None where those are more (a read key): no answer goes out early."""
        self._run = run
        self._now_ms = now_ms
        self._admit = admit
        # (path, query string) of requests without ``at`` → the parameters they were parsed into.
        self._queries: OrderedDict[tuple[str, bytes], Hashable] = OrderedDict()
        self._gate = gate
        self._share_s = share_ms / 1000
        self._stamp = stamp
        self._headers = dict(headers)  # Cache-Control and Vary, the same on every answer
        self._done: OrderedDict[Hashable, Answer] = OrderedDict()
        self._done_lock = threading.Lock()  # written() clears it from the thread that stored events
        self._generation = 0  # moved by written(): an answer begun before a write is not kept
        self._flights: dict[Hashable, asyncio.Future[Answer]] = {}

    def written(self) -> None:
        """This process stored or deleted events: the next request reads the change stamp again, and
        computes its answer afresh, so a client reads its own writes."""
        self._stamp.written()
        with self._done_lock:
            self._done.clear()
            self._generation += 1

    def hot(self, request: Request) -> Response | None:
        """The answer to a request whose path and query string were answered before, if it is shared
        now: None sends the request on to FastAPI. Only a GET for the current minute (no ``at``)."""
        if self._admit is None or request.method != "GET":
            return None
        now = self._now_ms()
        with self._done_lock:
            key = self._queries.get((request.scope["path"], request.scope["query_string"]))
            shared = (key, now - now % MINUTE_MS)
            found = None if key is None else self._done.get(shared)
        if found is None or time.monotonic() - found.made > self._share_s:
            return None
        self._admit(request)
        held = request.headers.get("if-none-match")
        if held is not None:
            fresh = self._stamp.fresh()
            if fresh is None:
                return None
            current = etag(key, shared[1], fresh[0])
            if _held(held, current):
                return Response(status_code=304, headers={**self._headers, "ETag": current})
        return self._response(request, found)

    async def respond(self, request: Request, key: Hashable, at_ms: int,
                      compute: Callable[[], dict[str, Any]], *, now: bool = False) -> Response:
        """The answer to ``key`` as a response: 304 to a client that holds it, shared where it may be.
        ``now``: the request asked for the current minute, so a later one with the same path and
        query string may be answered by :meth:`hot`."""
        if now:
            asked = (request.scope["path"], request.scope["query_string"])
            with self._done_lock:
                self._queries[asked] = key
                self._queries.move_to_end(asked)
                while len(self._queries) > _QUERIES_KEPT:
                    self._queries.popitem(last=False)
        minute = at_ms - at_ms % MINUTE_MS
        fresh = self._stamp.fresh()
        stamp = fresh[0] if fresh is not None else await self._run(self._stamp.current)
        current = etag(key, minute, stamp)
        if _held(request.headers.get("if-none-match", ""), current):
            return Response(status_code=304, headers={**self._headers, "ETag": current})
        answer = await self._answer(request, (key, minute), current, compute)
        return self._response(request, answer)

    async def _answer(self, request: Request, key: Hashable, tag: str, compute: Callable[[], dict[str, Any]]
                      ) -> Answer:
        with self._done_lock:
            found = self._done.get(key)
        if found is not None and time.monotonic() - found.made <= self._share_s:
            return found
        try:
            return await self._renewed(request, key, tag, compute)
        except ApiError as refused:
            # Overload refused the renewal (trend/api/admission.py): a hot answer many share must not
            # turn into a refusal for all of them. The last one, if recent, says its own ``at``.
            if refused.status in (429, 503) and found is not None and time.monotonic() - found.made <= STALE_S:
                return found
            raise

    async def _renewed(self, request: Request, key: Hashable, tag: str, compute: Callable[[], dict[str, Any]]
                       ) -> Answer:
        generation = self._generation
        # A flight begun before this process's last write is not joined: a client reads its own writes.
        in_flight = (key, generation)
        flight = self._flights.get(in_flight)
        if flight is not None:
            return await asyncio.shield(flight)
        flight = asyncio.get_running_loop().create_future()
        self._flights[in_flight] = flight
        made = time.monotonic()
        try:
            async with self._gate(request):
                # Encoded on the read's thread too: a large answer's JSON would hold up the event loop.
                answer = Answer(await self._run(lambda: _encoded(compute())), tag, made)
        except BaseException as exc:
            flight.set_exception(exc)
            flight.exception()  # retrieved: a flight nobody else joined must not warn
            raise
        finally:
            del self._flights[in_flight]
        flight.set_result(answer)
        with self._done_lock:
            if generation == self._generation:
                self._done[key] = answer
                self._done.move_to_end(key)
                while len(self._done) > _KEPT:
                    self._done.popitem(last=False)
        return answer

    def _response(self, request: Request, answer: Answer) -> Response:
        headers = {**self._headers, "ETag": answer.etag}
        if len(answer.body) >= GZIP_BYTES and "gzip" in request.headers.get("accept-encoding", ""):
            return Response(answer.gzipped(), media_type="application/json",
                            headers={**headers, "Content-Encoding": "gzip"})
        return Response(answer.body, media_type="application/json", headers=headers)


def _encoded(shape: dict[str, Any]) -> bytes:
    return json.dumps(shape, ensure_ascii=False, separators=(",", ":"), allow_nan=False).encode()


def _held(header: str, current: str) -> bool:
    """Whether an If-None-Match header names the current answer: its ETag, or ``*``, which a GET
    holds whenever there is an answer at all (RFC 9110, 13.1.2)."""
    tags = _tags(header)
    return "*" in tags or current in tags


def _tags(header: str) -> set[str]:
    """The entity tags of an If-None-Match header; weak and strong compare alike (RFC 9110, 13.1.2)."""
    tags = {tag.strip() for tag in header.split(",") if tag.strip()}
    return tags | {f"W/{tag}" for tag in tags if not tag.startswith("W/")}
