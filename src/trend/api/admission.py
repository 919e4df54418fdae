"""Admission: classes of work with capacity of their own, so one client's flood never starves the
others, the writes, or the probes (docs/operations.md, "Overload").

* **Probes** (``/livez``, ``/readyz``, ``/healthz``, ``/metrics``) are never queued or refused, and
  run on threads of their own: a busy pool of reads never delays them.
* **Writes** (ingest, erasure) run on threads of their own too, which reads cannot take.
* **Reads** that compute an answer run on at most ``TREND_READ_CONCURRENCY`` threads at once. One
  client holds at most ``TREND_READ_CONCURRENCY_PER_CLIENT`` of them; beyond that its reads wait in a
  short queue of its own (``TREND_READ_QUEUE_PER_CLIENT``, ``TREND_READ_QUEUE_WAIT_MS``), and beyond
  the queue they are refused at once with 429 and ``Retry-After``, before any database work. A read
  that waited its whole time gets 503 and ``Retry-After``. Other clients keep the rest of the
  threads. A read answered from a shared answer (trend/api/answers.py) takes no place: it costs
  nothing to give again.
* Each client also has a token bucket per class (``TREND_RATE_READS``, ``TREND_RATE_WRITES`` a
  second, bursts of twice that): a request without a token is refused with 429 at once.

A client is the key it presents with the address it comes from (behind a proxy, let uvicorn trust
its forwarded headers, so the address is the client's). Everything here is per process.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import math
import threading
import time
from collections import OrderedDict, deque
from collections.abc import AsyncIterator, Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any, NoReturn, TypeVar

from fastapi import Depends
from starlette.requests import Request

from trend.api.errors import ApiError
from trend.config import Settings
from trend.logging import get_logger

log = get_logger("serve")
T = TypeVar("T")

PROBE_THREADS = 2
WRITE_THREADS = 8
# Clients whose token buckets are remembered (least recently seen dropped first): bounded memory.
_CLIENTS_KEPT = 10_000
# Shedding is logged when it starts, then once it has stopped for this long: not once per request.
_QUIET_S = 10.0


class ShedError(ApiError):
    """A refusal before any work: 429 (this client's share is used) or 503 (no room in time)."""

    def __init__(self, status: int, reason: str, retry_after_s: float, message: str) -> None:
        super().__init__(status, "overloaded" if status == 503 else "rate_limited", message,
                         headers={"Retry-After": str(max(1, math.ceil(retry_after_s)))})
        self.reason = reason


def client_of(request: Request, keys: Sequence[str]) -> str:
    """The address the request came from, and the key presented when it is one of the server's
    ``keys`` (a digest of it, never the key). Any other header is no client of its own: where reads
    need no key, a made-up token with each request would otherwise be a new client each time, with a
    rate of its own."""
    address = request.client.host if request.client is not None else "?"
    scheme, _, token = request.headers.get("authorization", "").partition(" ")
    token = token.strip()
    known = scheme.lower() == "bearer" and bool(token) and any(
        hmac.compare_digest(token.encode(), key.encode()) for key in keys)
    presented = hashlib.blake2b(token.encode(), digest_size=6).hexdigest() if known else "-"
    return f"{presented}@{address}"


@dataclass
class _Bucket:
    tokens: float
    at: float


class TokenBuckets:
    """A token bucket per client: ``rate`` tokens a second, at most ``burst`` kept."""

    def __init__(self, rate: float, burst: float) -> None:
        self.rate, self.burst = rate, burst
        self._buckets: OrderedDict[str, _Bucket] = OrderedDict()
        self._lock = threading.Lock()

    def take(self, client: str) -> float:
        """0 when a token was taken; else how many seconds until one will be there."""
        now = time.monotonic()
        with self._lock:
            bucket = self._buckets.pop(client, None) or _Bucket(self.burst, now)
            bucket.tokens = min(self.burst, bucket.tokens + (now - bucket.at) * self.rate)
            bucket.at = now
            self._buckets[client] = bucket
            while len(self._buckets) > _CLIENTS_KEPT:
                self._buckets.popitem(last=False)
            if bucket.tokens >= 1:
                bucket.tokens -= 1
                return 0.0
            return (1 - bucket.tokens) / self.rate


@dataclass(eq=False)  # each waiter is itself: removed from the queue by identity
class _Waiter:
    client: str
    ready: asyncio.Future[None]


@dataclass
class FairGate:
    """At most ``limit`` holders, at most ``per_client`` of one client; waiters queue first come first
    served among those whose client is under its share, ``queue_per_client`` each and ``queue`` in all."""

    limit: int
    per_client: int
    queue_per_client: int
    queue: int
    held: dict[str, int] = field(default_factory=dict)
    waiting: deque[_Waiter] = field(default_factory=deque)

    @property
    def in_use(self) -> int:
        return sum(self.held.values())

    def may_hold(self, client: str) -> bool:
        return self.in_use < self.limit and self.held.get(client, 0) < self.per_client

    async def acquire(self, client: str, wait_s: float) -> bool:
        """Hold a place (True), or say why not: False after waiting ``wait_s``; :class:`ShedError` at once when
        the client's queue (or the whole queue) is full."""
        if self.may_hold(client) and not any(w.client == client for w in self.waiting):
            self.held[client] = self.held.get(client, 0) + 1
            return True
        queued = sum(1 for w in self.waiting if w.client == client)
        if queued >= self.queue_per_client or len(self.waiting) >= self.queue:
            raise ShedError(429, "queue_full", 1.0, "too many reads of this client at once; retry after Retry-After")
        waiter = _Waiter(client, asyncio.get_running_loop().create_future())
        self.waiting.append(waiter)
        try:
            await asyncio.wait_for(asyncio.shield(waiter.ready), wait_s)
        except TimeoutError:
            if waiter.ready.done():  # handed a place just as the wait ended: keep it
                return True
            self.waiting.remove(waiter)
            return False
        except BaseException:
            if waiter in self.waiting:
                self.waiting.remove(waiter)
            elif waiter.ready.done():
                self.release(client)  # cancelled after being handed a place: hand it on
            raise
        return True

    def release(self, client: str) -> None:
        held = self.held.get(client, 0) - 1
        if held > 0:
            self.held[client] = held
        else:
            self.held.pop(client, None)
        self._hand_on()

    def _hand_on(self) -> None:
        for waiter in list(self.waiting):
            if self.in_use >= self.limit:
                return
            if self.held.get(waiter.client, 0) < self.per_client:
                self.waiting.remove(waiter)
                self.held[waiter.client] = self.held.get(waiter.client, 0) + 1
                waiter.ready.set_result(None)


class SheddingLog:
    """One WARNING when a class starts refusing, one INFO when it has been quiet for a while."""

    def __init__(self, kind: str) -> None:
        self.kind = kind
        self._since: float | None = None
        self._last = 0.0
        self._count = 0

    def shed(self, reason: str) -> None:
        now = time.monotonic()
        self.settle(now)
        if self._since is None:
            self._since, self._count = now, 0
            log.warning("Overload: refusing %s (%s) until their load falls", self.kind, reason)
        self._count += 1
        self._last = now

    def settle(self, now: float | None = None) -> None:
        now = time.monotonic() if now is None else now
        if self._since is not None and now - self._last >= _QUIET_S:
            log.info("Overload over: %d %s refused in %.0f s", self._count, self.kind, self._last - self._since)
            self._since = None


Counted = Callable[[str, str, str], None]  # (class, outcome, reason)


class Admission:
    """The classes of one Trend's API in this process (see the module's docstring)."""

    def __init__(self, settings: Settings, counted: Counted) -> None:
        self.enabled = settings.admission
        self._keys = [key.get_secret_value() for key in (settings.api_key, settings.read_key) if key is not None]
        self._counted = counted
        self.probe_pool = _pool("probe", PROBE_THREADS)
        self.write_pool = _pool("write", WRITE_THREADS)
        self.read_pool = _pool("read", settings.read_concurrency)
        self._gate = FairGate(settings.read_concurrency, settings.read_concurrency_per_client,
                              settings.read_queue_per_client, settings.read_queue)
        self._wait_s = settings.read_queue_wait_ms / 1000
        self._rates = {"reads": TokenBuckets(settings.rate_reads, 2 * settings.rate_reads),
                       "writes": TokenBuckets(settings.rate_writes, 2 * settings.rate_writes)}
        self._logs = {kind: SheddingLog(kind) for kind in ("reads", "writes")}

    async def run(self, pool: ThreadPoolExecutor, call: Callable[[], T]) -> T:
        """``call`` on one of ``pool``'s threads, off the event loop."""
        return await asyncio.get_running_loop().run_in_executor(pool, call)

    def check_rate(self, kind: str, client: str) -> None:
        if not self.enabled:
            return
        wait = self._rates[kind].take(client)
        if wait:
            self._refuse(kind, ShedError(429, "rate", wait, f"more {kind} a second than this client may make; "
                                                       "retry after Retry-After"))
        if kind == "writes":  # reads are counted when they take a place (reading), or not at all (shared)
            self._counted(kind, "admitted", "")

    @asynccontextmanager
    async def reading(self, request: Request) -> AsyncIterator[None]:
        """Hold a read's place around work that reads the database (see :class:`FairGate`); a refusal is
        a :class:`ShedError`. Answers that are shared or cached take no place: they cost nothing to
        give again, so a hot top list under any number of requests of one client is never refused."""
        if not self.enabled:
            yield
            return
        client = client_of(request, self._keys)
        queued = not self._gate.may_hold(client)
        try:
            admitted = await self._gate.acquire(client, self._wait_s)
        except ShedError as refused:
            self._refuse("reads", refused)
        if not admitted:
            self._refuse("reads", ShedError(503, "queue_timeout", self._wait_s,
                                            "the server is busy with reads; retry after Retry-After"))
        self._counted("reads", "queued" if queued else "admitted", "")
        self._logs["reads"].settle()
        try:
            yield
        finally:
            self._gate.release(client)

    def _refuse(self, kind: str, refusal: ShedError) -> NoReturn:
        self._counted(kind, "shed", refusal.reason)
        self._logs[kind].shed(refusal.reason)
        raise refusal

    def check_read(self, request: Request) -> None:
        """The check of :meth:`read`, for an answer that goes out before the route's dependencies."""
        self.check_rate("reads", client_of(request, self._keys))

    def read(self) -> Any:
        """A route dependency: the client's read rate, checked before anything else."""

        async def admitted(request: Request) -> None:
            self.check_rate("reads", client_of(request, self._keys))

        return Depends(admitted)

    def write(self) -> Any:
        """A route dependency: the client's write rate, checked before anything is read of the body."""

        async def admitted(request: Request) -> None:
            self.check_rate("writes", client_of(request, self._keys))

        return Depends(admitted)


_pools: dict[tuple[str, int], ThreadPoolExecutor] = {}
_pools_lock = threading.Lock()


def _pool(kind: str, threads: int) -> ThreadPoolExecutor:
    """The process's pool of one class and size, shared by every Trend in it (tests, embedding):
    threads are made as work comes, and stay few."""
    with _pools_lock:
        found = _pools.get((kind, threads))
        if found is None:
            found = _pools[(kind, threads)] = ThreadPoolExecutor(threads, thread_name_prefix=f"trend-{kind}")
        return found
