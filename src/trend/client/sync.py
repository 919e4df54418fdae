"""``TrendClient``: events queued by the app's threads, sent in batches by one background thread."""

from __future__ import annotations

import atexit
import gzip
import json
import logging
import os
import queue
import threading
import time
import uuid
import weakref
from collections.abc import Callable, Sequence
from typing import Any

import httpx

from trend.client.delivery import ClientStats, Outcome, Verdict, backoff, judge, local_problem
from trend.version import __version__

_log = logging.getLogger("trend.client")
Event = dict[str, Any]
# Called on the background thread with the events given up and why; it must not block for long.
OnFailure = Callable[[Sequence[Event], str], None]


def _log_everything() -> None:
    """``debug=True``: the client's log at DEBUG, shown on standard error unless the app shows it already."""
    _log.setLevel(logging.DEBUG)
    if not _log.handlers and not logging.getLogger().handlers:
        handler = logging.StreamHandler()
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
        _log.addHandler(handler)


class TrendClient:
    """Send events to a trend server without ever blocking the caller.

    ``track()`` puts one event on a bounded queue and returns at once. A background thread sends the
    queue in batches of ``batch_size`` events, or whatever is there every ``flush_interval`` seconds.
    A batch that meets a connection error, a timeout, 429 or 5xx is sent again after a backoff, up
    to ``max_retries`` times; each event carries an ``event_id``, so the server stores it once however
    often it is sent. When the queue is full (the server has been away for a while), ``track()``
    drops the new event and counts it in ``stats.dropped``: the app's memory and latency come first.
    """

    def __init__(self, base_url: str, *, api_key: str | None = None, batch_size: int = 500,
                 flush_interval: float = 0.5, max_queue: int = 10_000, max_retries: int = 10,
                 max_retry_seconds: float = 300.0, timeout: float = 10.0, on_failure: OnFailure | None = None,
                 compress: bool = True, sync_mode: bool = False, disabled: bool = False,
                 exit_timeout: float = 5.0, debug: bool = False, transport: httpx.BaseTransport | None = None) -> None:
        if not 1 <= batch_size <= 10_000:
            raise ValueError("batch_size must be 1 to 10000 (the server's TREND_MAX_BATCH_EVENTS default)")
        if flush_interval <= 0 or max_queue < 1 or max_retries < 0 or timeout <= 0 or max_retry_seconds < 0:
            raise ValueError("flush_interval and timeout must be positive, max_queue at least 1, max_retries and "
                             "max_retry_seconds >= 0")
        self.url = base_url.rstrip("/") + "/v1/events"
        self.batch_size, self.flush_interval, self.max_retries = batch_size, flush_interval, max_retries
        self.max_retry_seconds = max_retry_seconds
        self.on_failure = on_failure
        self.compress, self.sync_mode, self.disabled = compress, sync_mode, disabled
        headers = {"User-Agent": f"trend-client/{__version__}"}
        if api_key:
            headers["Authorization"] = f"Bearer {api_key}"
        self._http_options: dict[str, Any] = {"headers": headers, "timeout": timeout, "transport": transport}
        if debug:
            _log_everything()
        self._max_queue = max_queue
        self._stats = ClientStats()
        self._invalid_kinds: set[str] = set()  # fields whose invalid values were logged once already
        self._dropping = False  # logged when drops start, and again once the queue has room
        self._closing = False
        self._close_by = float("inf")  # after close()'s timeout, retries stop and the rest is given up
        self._start()
        # A forked worker (gunicorn, multiprocessing) inherits the queue but not the thread: it starts
        # empty, with a thread of its own (the parent sends what it had queued).
        method = weakref.WeakMethod(self._start)
        os.register_at_fork(after_in_child=lambda: _call_if_alive(method))
        # A script that ends without close() still sends what it queued, for at most exit_timeout.
        self.exit_timeout = exit_timeout
        atexit.register(_call_if_alive, weakref.WeakMethod(self._at_exit))

    def _at_exit(self) -> None:
        if not self._closing:
            self.close(self.exit_timeout)

    def _start(self) -> None:
        self._lock = threading.Lock()
        self._settled = threading.Condition(self._lock)  # notified when events are delivered or given up
        self._unsettled = 0  # queued and not yet delivered or given up
        self._losses_reported = self._losses  # failed + invalid + dropped, as the last flush saw them
        self._wake = threading.Event()  # flush() and close(): send now, without waiting for the interval
        self._queue: queue.Queue[Event] = queue.Queue(self._max_queue)
        self._thread = threading.Thread(target=self._run, name="trend-client", daemon=True)
        if not self.sync_mode and not self.disabled:
            self._thread.start()

    # -- the app's side --

    def track(self, event: str, key: str, *, segment: str = "", user_id: str | None = None, value: float = 1.0,
              ts: float | None = None, event_id: str | None = None) -> str | None:
        """Queue one event; its id, or None when it was dropped (the queue full, or the client closed).

        ``ts`` is epoch seconds, by default now: the event keeps the time it happened, however late it
        is delivered. ``event_id`` is made (a UUID) unless given.
        """
        record: Event = {"event": event, "key": key, "ts": time.time() if ts is None else ts,
                         "event_id": event_id or uuid.uuid4().hex, "value": value}
        if segment:
            record["segment"] = segment
        if user_id is not None:
            record["user_id"] = user_id
        if self.disabled:
            return None
        problem = local_problem(record)
        if problem is not None:
            # Never raised: an analytics call must not fail the app's request. Counted, logged once per
            # kind, and handed to on_failure like an event the server refused.
            self._set_aside(record, problem)
            return None
        with self._lock:
            if self._closing:
                self._stats.dropped += 1
                return None
            if self.sync_mode:
                self._stats.queued += 1
                self._unsettled += 1
            else:
                try:
                    self._queue.put_nowait(record)
                except queue.Full:
                    self._stats.dropped += 1
                    first = not self._dropping
                    self._dropping = True
                    if first:
                        _log.warning("trend: the queue is full (%d events): new events are dropped until it has "
                                     "room (stats.dropped counts them)", self._max_queue)
                    return None
                self._stats.queued += 1
                self._unsettled += 1
                if self._dropping:
                    self._dropping = False
                    _log.warning("trend: the queue has room again; %d events were dropped in all", self._stats.dropped)
        if self.sync_mode:
            # Scripts and tests: sent now, on the caller's thread, retried as in the background; the
            # id only if the server has the event.
            with httpx.Client(**self._http_options) as http:
                if not self._send(http, [record]):
                    return None
        return str(record["event_id"])

    def flush(self, timeout: float | None = None) -> bool:
        """Send what is queued now and wait until each event is delivered or given up. True only when
        every one was delivered: False when ``timeout`` seconds passed first, or when any event since
        the last flush was given up (failed, invalid or dropped: ``stats`` and ``on_failure`` say which)."""
        with self._lock:
            lost_before = self._losses
        self._wake.set()
        with self._settled:
            settled = self._settled.wait_for(lambda: self._unsettled == 0, timeout)
            lost = self._losses != lost_before or self._losses != self._losses_reported
            self._losses_reported = self._losses
        return settled and not lost

    @property
    def _losses(self) -> int:
        return self._stats.failed + self._stats.invalid + self._stats.dropped

    def close(self, timeout: float = 30.0) -> bool:
        """Stop taking events, send what is queued (for at most ``timeout`` seconds), stop the thread.
        What could not be sent by then counts as failed. True only when every event since the last
        flush was delivered, in time."""
        with self._lock:
            self._closing = True
            self._close_by = time.monotonic() + timeout
        delivered = self.flush(timeout)
        self._wake.set()
        if self._thread.is_alive():
            # A send in progress ends within the HTTP timeout, and the thread gives up the rest.
            self._thread.join(timeout=self._http_options["timeout"] + 1.0)
        return delivered

    @property
    def stats(self) -> ClientStats:
        """A copy of the counters (see ``ClientStats``)."""
        with self._lock:
            return self._stats.copy()

    def __enter__(self) -> TrendClient:
        return self

    def __exit__(self, *_: object) -> None:
        self.close()

    # -- the background thread --

    def _run(self) -> None:
        with httpx.Client(**self._http_options) as http:
            while not self._gone():
                batch = self._next_batch()
                if batch:
                    self._send(http, batch)
                elif self._closing:
                    return
            self._give_up_queue()

    def _next_batch(self) -> list[Event]:
        """Up to ``batch_size`` events: as soon as that many are queued, at the interval, or on a flush."""
        batch: list[Event] = []
        deadline = time.monotonic() + self.flush_interval
        while len(batch) < self.batch_size:
            try:
                batch.append(self._queue.get_nowait())
                continue
            except queue.Empty:
                pass
            left = deadline - time.monotonic()
            if left <= 0 or self._wake.is_set() or self._closing:
                break
            self._wake.wait(min(left, 0.05))
        if self._queue.empty():
            self._wake.clear()
        return batch

    def _post(self, http: httpx.Client, part: list[Event]) -> httpx.Response:
        """One POST, gzipped unless the server has said it cannot take that (a release before it could
        answers 415 or 422 invalid_json): then once more as plain JSON, and plain from then on."""
        body = json.dumps(part, ensure_ascii=False, separators=(",", ":")).encode()
        if self.compress:
            response = http.post(self.url, content=gzip.compress(body, compresslevel=5),
                                 headers={"Content-Type": "application/json", "Content-Encoding": "gzip"})
            if response.status_code not in (415, 422) or _error_code(response) not in _NO_GZIP:
                return response
            self.compress = False
            _log.warning("trend: the server does not take gzip bodies; sending them plain from now on")
        return http.post(self.url, content=body, headers={"Content-Type": "application/json"})

    def _send(self, http: httpx.Client, batch: list[Event]) -> int:
        """Deliver ``batch``, retrying, splitting and dropping invalid events as the server answers;
        how many events the server has now."""
        delivered = 0
        pending = [batch]
        while pending:
            part = pending.pop()
            attempt = 0
            first_try = time.monotonic()
            while part:
                try:
                    outcome = judge(self._post(http, part))
                except httpx.TransportError as exc:
                    outcome = Outcome(Verdict.RETRY, reason=f"{type(exc).__name__}: {exc}")
                except Exception as exc:  # a strange answer, an event that is not JSON: never the thread's end
                    _log.exception("trend: a batch could not be sent")
                    outcome = Outcome(Verdict.FAIL, reason=f"{type(exc).__name__}: {exc}")
                if outcome.verdict is Verdict.DELIVERED:
                    _log.debug("trend: delivered %d events (%d duplicates) after %d retries", len(part),
                               outcome.duplicates, attempt)
                    self._settle(len(part), delivered=len(part), duplicates=outcome.duplicates)
                    delivered += len(part)
                    with self._lock:
                        self._stats.last_error = None  # delivering again: the outage is over
                    part = []
                elif outcome.verdict is Verdict.SPLIT and len(part) > 1:
                    pending += [part[: len(part) // 2], part[len(part) // 2:]]
                    part = []
                elif outcome.verdict is Verdict.DROP_INVALID:
                    bad = [(e, outcome.reasons[i]) for i, e in enumerate(part) if i in outcome.invalid]
                    part = [e for i, e in enumerate(part) if i not in outcome.invalid]
                    self._settle(len(bad), invalid=len(bad))
                    for reason in dict.fromkeys(why for _, why in bad):  # one call per reason, events in order
                        refused = [e for e, why in bad if why == reason]
                        self._log_invalid(f"the server refused {len(refused)} events: {reason}", reason)
                        self._report(refused, reason)
                elif (outcome.verdict is Verdict.RETRY and attempt < self.max_retries and not self._gone()
                      and time.monotonic() - first_try < self.max_retry_seconds):
                    attempt += 1
                    with self._lock:
                        self._stats.retries += 1
                        self._stats.last_error = outcome.reason
                    # Once per batch at WARNING: an outage of minutes must not flood the app's log.
                    _log.log(logging.WARNING if attempt == 1 else logging.DEBUG,
                             "trend: sending %d events again in a moment: %s", len(part), outcome.reason)
                    self._pause(backoff(attempt, outcome.retry_after))
                else:
                    with self._lock:
                        self._give_up_locked(len(part), outcome.reason)
                    self._report(part, outcome.reason)
                    part = []
        return delivered

    def _set_aside(self, record: Event, problem: str) -> None:
        with self._lock:
            self._stats.invalid += 1
            self._stats.last_error = problem
        self._log_invalid(f"an event was not queued: {problem}", problem)
        self._report([record], problem)

    def _log_invalid(self, message: str, reason: str) -> None:
        """At WARNING the first time a field is at fault, at DEBUG after: a stream of bad events must
        not flood the app's log."""
        field = reason.removeprefix("422 ").partition(":")[0]
        with self._lock:
            first = field not in self._invalid_kinds
            self._invalid_kinds.add(field)
        _log.log(logging.WARNING if first else logging.DEBUG, "trend: %s", message)

    def _gone(self) -> bool:
        return self._closing and time.monotonic() >= self._close_by

    def _give_up_queue(self) -> None:
        unsent: list[Event] = []
        while True:
            try:
                unsent.append(self._queue.get_nowait())
            except queue.Empty:
                break
        with self._lock:
            self._give_up_locked(len(unsent), "unsent when close() timed out")
        self._report(unsent, "unsent when close() timed out")

    def _pause(self, seconds: float) -> None:
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline and not self._gone():
            time.sleep(min(0.05, max(0.0, deadline - time.monotonic())))

    def _settle(self, count: int, **counters: int) -> None:
        with self._settled:
            for name, value in counters.items():
                setattr(self._stats, name, getattr(self._stats, name) + value)
            self._unsettled -= count
            self._settled.notify_all()

    def _give_up_locked(self, count: int, reason: str) -> None:
        if not count:
            return
        self._stats.failed += count
        self._stats.last_error = reason
        self._unsettled -= count
        self._settled.notify_all()
        _log.error("trend: %d events not delivered: %s", count, reason)

    def _report(self, events: Sequence[Event], reason: str) -> None:
        if self.on_failure is not None and events:
            try:
                self.on_failure(events, reason)
            except Exception:  # the app's callback must not stop the sending
                _log.exception("trend: the on_failure callback failed")


# What a server that cannot unpack a gzip body answers: before this release, invalid_json (it read
# the packed bytes as text); an unknown encoding, unsupported_media_type.
_NO_GZIP = frozenset({"invalid_json", "unsupported_media_type"})


def _error_code(response: httpx.Response) -> str | None:
    try:
        error = response.json().get("error", {})
    except (ValueError, AttributeError):
        return None
    return error.get("code") if isinstance(error, dict) else None


def _call_if_alive(method: weakref.WeakMethod[Callable[[], None]]) -> None:
    start = method()
    if start is not None:
        start()
