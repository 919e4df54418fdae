"""One client floods a real ``trend serve`` with expensive reads; another client's writes, probes and
cheap reads still get through in time, and the flood is answered or refused with ``Retry-After``,
never left hanging. Limits come from bench/overload.py's measurements (docs/benchmarks.md)."""

from __future__ import annotations

import random
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import contextmanager

import httpx
import pytest
from bench.overload import SECOND_CLIENT, seed

from tests.deadlines import scaled
from tests.servers import Served

pytestmark = [pytest.mark.faults, pytest.mark.slow]
THREADS = 24
SECONDS = 8


def _flood(url: str, stop: threading.Event, seen: Counter[str], rng: random.Random) -> None:
    with httpx.Client(base_url=url, timeout=scaled(30)) as http:
        while not stop.is_set():
            try:
                answer = http.get("/v1/top", params={"event": "bulk", "by": "users", "window": "7d",
                                                     "limit": rng.randrange(1, 101)})
            except httpx.TransportError as exc:
                seen[type(exc).__name__] += 1
                continue
            if answer.status_code in (429, 503) and "retry-after" not in answer.headers:
                seen[f"{answer.status_code} without Retry-After"] += 1
            seen[str(answer.status_code)] += 1


@contextmanager
def _flooding(url: str) -> Iterator[Counter[str]]:
    """:data:`THREADS` threads of one client flooding ``url`` with expensive reads, for the block; the
    answers they got, by status."""
    stop = threading.Event()
    flood: Counter[str] = Counter()
    flooders = [threading.Thread(target=_flood, args=(url, stop, flood, random.Random(n))) for n in range(THREADS)]
    for thread in flooders:
        thread.start()
    try:
        yield flood
    finally:
        stop.set()
        for thread in flooders:
            thread.join(scaled(60))


class TestOverload:
    def test_another_clients_writes_and_probes_get_through_a_flood(self, database_url: str) -> None:
        seed(database_url, keys=5_000, people=2_000, events=60_000, days=0.5)
        server = Served(database_url, "--no-worker")
        took: dict[str, list[float]] = {"write": [], "readyz": [], "livez": [], "cheap read": []}
        failed: Counter[str] = Counter()
        try:
            with _flooding(server.url) as flood:
                time.sleep(1)  # the flood fills the reads' places first
                transport = httpx.HTTPTransport(local_address=SECOND_CLIENT)  # another client: another address
                with httpx.Client(base_url=server.url, timeout=scaled(30), transport=transport) as http:
                    calls: list[tuple[str, Callable[[], httpx.Response]]] = [
                        ("write", lambda: http.post("/v1/events", json={"event": "search", "key": "p"})),
                        ("readyz", lambda: http.get("/readyz")), ("livez", lambda: http.get("/livez")),
                        ("cheap read", lambda: http.get("/v1/top", params={"event": "search"}))]
                    ends = time.monotonic() + SECONDS
                    while time.monotonic() < ends:
                        for name, call in calls:
                            began = time.perf_counter()
                            if call().status_code >= 300:
                                failed[name] += 1
                            took[name].append(time.perf_counter() - began)
                        time.sleep(0.2)
        finally:
            server.stop()
        assert failed == Counter(), failed
        for name, bound in (("write", 1.0), ("readyz", 1.0), ("livez", 1.0), ("cheap read", 2.0)):
            # Each call of the second client is bounded. One outlier of a loaded 2-core machine (a write
            # once took 1.87 s against 1.74 s, its others at most 0.32 s) may pass up to three times the
            # bound; a client queued behind the flood would wait seconds on every call, not once.
            slow = [seconds for seconds in took[name] if seconds > scaled(bound)]
            assert len(slow) <= 1, (name, sorted(took[name])[-5:])
            assert max(took[name]) <= scaled(3 * bound), (name, sorted(took[name])[-5:])
        assert set(flood) <= {"200", "429", "503"}, flood  # nothing timed out, dropped or unexplained
        assert flood["429"] > 0, flood  # the flood was shed, cheaply, before any database work
        assert flood["200"] > 0, flood  # and still served within its share

    def test_a_hot_read_of_the_flooding_client_itself_is_answered(self, database_url: str) -> None:
        """The flooding client's own hot list (a widget on its pages) renews its shared answer; when
        overload refuses the renewal, the last answer stands in. Before: 2,585 of 2,878 refused."""
        seed(database_url, keys=5_000, people=2_000, events=60_000, days=0.5)
        server = Served(database_url, "--no-worker")
        hot: Counter[str] = Counter()
        # Within one minute: the list of a new minute has no last answer to stand in for it.
        second = time.time() % 60
        if second > 60 - SECONDS - 12:  # too little of this minute is left for the whole test
            time.sleep(62 - second)
        try:
            with httpx.Client(base_url=server.url, timeout=scaled(30)) as http:
                http.get("/v1/top", params={"event": "bulk", "window": "1h"})  # the widget's list, once
                with _flooding(server.url) as flood:
                    ends = time.monotonic() + SECONDS
                    while time.monotonic() < ends:
                        hot[str(http.get("/v1/top", params={"event": "bulk", "window": "1h"}).status_code)] += 1
                        time.sleep(0.05)
                metrics = http.get("/metrics").text
        finally:
            server.stop()
        assert flood["429"] > 0, flood  # the client was being shed all along
        assert set(hot) == {"200"}, hot
        assert 'trend_admission_total{outcome="shed",reason="queue_full",request_class="reads"}' in metrics

    def test_a_hot_shared_read_is_never_refused_however_many_ask_at_once(self, database_url: str) -> None:
        """One app server asking the same top list for all its page views is one client: the answer is
        shared, so it takes no read's place, and none of 32 at once is refused."""
        seed(database_url, keys=500, people=100, events=5_000, days=0.2)
        server = Served(database_url, "--no-worker")
        statuses: Counter[str] = Counter()

        def ask() -> None:
            with httpx.Client(base_url=server.url, timeout=scaled(30)) as http:
                for _ in range(40):
                    statuses[str(http.get("/v1/top", params={"event": "bulk", "window": "1h"}).status_code)] += 1

        try:
            askers = [threading.Thread(target=ask) for _ in range(32)]
            for thread in askers:
                thread.start()
            for thread in askers:
                thread.join(scaled(120))
        finally:
            server.stop()
        assert statuses == Counter({"200": 32 * 40})
